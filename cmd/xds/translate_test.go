package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/golden"
)

// fixedNow keeps condition transition times out of the golden files' diffs.
var fixedNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// TestTranslateGolden runs `xds translate` on every testdata/translate/
// <case>.in folder and on the shipped demo, and compares its stdout with
// <case>.out.yaml and its exit code and stderr with <case>.err.txt.
func TestTranslateGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/translate/*.in")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	cases := map[string]string{"examples-clusterset": "../../examples/clusterset"}
	for _, d := range dirs {
		cases[strings.TrimSuffix(filepath.Base(d), ".in")] = d
	}
	for name, dir := range cases {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := translate(translateOptions{dir: dir, now: fixedNow}, &stdout, &stderr)
			golden.Check(t, filepath.Join("testdata/translate", name+".out.yaml"), stdout.Bytes())
			golden.Check(t, filepath.Join("testdata/translate", name+".err.txt"),
				fmt.Appendf(nil, "exit code: %d\n%s", code, stderr.String()))
		})
	}
}

// The command line: usage errors exit 2, --cluster filters, a missing
// folder exits 1.
func TestTranslateCommandLine(t *testing.T) {
	tests := map[string]struct {
		args     []string
		code     int
		stdout   string // substring
		stderr   string // substring
		noStdout string
	}{
		"no command":      {args: nil, code: 2, stdout: "Commands:"},
		"unknown command": {args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		"missing dir":     {args: []string{"translate"}, code: 2, stderr: "Usage: xds translate"},
		"one cluster": {args: []string{"translate", "--dir", "../../examples/clusterset", "--cluster", "central"}, code: 0,
			stdout: "# cluster: central", noStdout: "# cluster: east"},
		"folder does not exist": {args: []string{"translate", "--dir", filepath.Join(t.TempDir(), "nope")}, code: 1, stderr: "read ClusterSet folder"},
		"empty folder":          {args: []string{"translate", "--dir", t.TempDir()}, code: 1, stderr: "no member clusters"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %s)", code, tc.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stdout %q / stderr %q, want %q / %q", stdout.String(), stderr.String(), tc.stdout, tc.stderr)
			}
			if tc.noStdout != "" && strings.Contains(stdout.String(), tc.noStdout) {
				t.Errorf("stdout contains %q", tc.noStdout)
			}
		})
	}
}
