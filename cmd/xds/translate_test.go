package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/golden"
	"github.com/eastwest-dev/eastwest/internal/testkit"
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
			code := translateOnce(translateOptions{dir: dir, now: fixedNow}, &stdout, &stderr)
			golden.Check(t, filepath.Join("testdata/translate", name+".out.yaml"), stdout.Bytes())
			golden.Check(t, filepath.Join("testdata/translate", name+".err.txt"),
				fmt.Appendf(nil, "exit code: %d\n%s", code, stderr.String()))
		})
	}
	golden.NoOrphans(t, "testdata/translate/*.out.yaml")
	golden.NoOrphans(t, "testdata/translate/*.err.txt")
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
		"envoy resources of a gateway": {args: []string{"translate", "--dir", "../../examples/clusterset", "--node-cluster", "east", "--role", "gateway"}, code: 0,
			stdout: "# Listener eastwest-gateway-http-15080"},
		"envoy resources of a client": {args: []string{"translate", "--dir", "../../examples/clusterset", "--node-cluster", "west"}, code: 0,
			stdout: "# Listener frontend.shop.svc.clusterset.local:80", noStdout: "eastwest-gateway-http"},
		"mesh routes shape a client's routes": {args: []string{"translate", "--dir", "../../testdata/mesh.in", "--node-cluster", "a"}, code: 0,
			stdout: "weightedClusters"},
		"unknown node cluster": {args: []string{"translate", "--dir", "../../examples/clusterset", "--node-cluster", "mars"}, code: 1, stderr: `cluster "mars" is not a member`},
		"bad role":             {args: []string{"translate", "--dir", "../../examples/clusterset", "--node-cluster", "east", "--role", "pilot"}, code: 2, stderr: "--role must be client, gateway or gateway-api"},
		"a Gateway's Envoy, keys redacted": {args: []string{"translate", "--dir", "../../testdata/gateway-https.in", "--node-cluster", "east", "--role", "gateway-api", "--gateway", "infra/tls"}, code: 0,
			stdout: "[redacted sha256:", noStdout: "PRIVATE KEY"},
		"statuses with the MCS objects": {args: []string{"translate", "--dir", "../../examples/clusterset", "--cluster", "east"}, code: 0,
			stdout: "reason: BackendNotFound"},
		"gateway-api without a gateway": {args: []string{"translate", "--dir", "../../examples/clusterset", "--node-cluster", "east", "--role", "gateway-api"}, code: 2,
			stderr: "--role gateway-api goes with --gateway NAMESPACE/NAME"},
		"a Gateway eastwest does not program": {args: []string{"translate", "--dir", "../../examples/clusterset", "--node-cluster", "east", "--role", "gateway-api", "--gateway", "shop/ghost"}, code: 1,
			stderr: "has no Gateway shop/ghost"},
		"a zone orders PreferClose's endpoints": {args: []string{"translate", "--dir", "../../testdata/tiers.in", "--node-cluster", "use1", "--role", "gateway", "--zone", "us-east-1a"}, code: 0,
			stdout: "subZone: us-east-1a\n    zone: use1\n- lbEndpoints:\n  - endpoint:\n      address:\n        socketAddress:\n          address: 10.1.3.2"},
		"a zone that is no label value": {args: []string{"translate", "--dir", "../../testdata/tiers.in", "--node-cluster", "use1", "--zone", "a/b"}, code: 2, stderr: `--zone "a/b"`},
		"a zone without a node cluster": {args: []string{"translate", "--dir", "../../testdata/tiers.in", "--zone", "z"}, code: 2, stderr: "--zone go with --node-cluster"},
		"folder does not exist":         {args: []string{"translate", "--dir", filepath.Join(t.TempDir(), "nope")}, code: 1, stderr: "read ClusterSet folder"},
		"empty folder":                  {args: []string{"translate", "--dir", t.TempDir()}, code: 1, stderr: "no member clusters"},
		"a role without a node cluster": {args: []string{"translate", "--dir", "../../examples/clusterset", "--role", "gateway"}, code: 2,
			stderr: "xds translate: --role go with --node-cluster"},
		"an unexpected argument is named": {args: []string{"translate", "--dir", "../../examples/clusterset", "east"}, code: 2,
			stderr: `xds translate takes no arguments (got ["east"]); the folder goes with --dir`},
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

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader,
// signalling every write.
type syncBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() {
		select {
		case b.wrote <- struct{}{}:
		default:
		}
	}()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor blocks until the buffer holds want, failing after a generous
// deadline (a guard against hangs, not a latency assertion).
func (b *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		select {
		case <-b.wrote:
		case <-deadline:
			t.Fatalf("output never contained %q:\n%s", want, b.String())
		}
	}
}

// translate --watch prints the state, then the new state after a file is
// added, without a restart, and reports a broken file while it keeps going.
func TestTranslateWatch(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "east", "api.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: apps}\nspec: {ports: [{port: 8080}]}\n")
	stdout := &syncBuffer{wrote: make(chan struct{}, 1)}
	stderr := &syncBuffer{wrote: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- translateWatch(ctx, translateOptions{dir: dir}, stdout, stderr) }()

	stdout.waitFor(t, "# Cluster east: 0 ServiceImports")
	writeFile(t, filepath.Join(dir, "east", "export.yaml"), "apiVersion: multicluster.x-k8s.io/v1beta1\nkind: ServiceExport\nmetadata: {name: api, namespace: apps}\n")
	stdout.waitFor(t, "# Cluster east: 1 ServiceImports")
	writeFile(t, filepath.Join(dir, "east", "broken.yaml"), "kind: [\n")
	stderr.waitFor(t, "broken.yaml:1: document 1: not valid YAML")

	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// writeFile saves a file of a ClusterSet folder (testkit.WriteFile).
func writeFile(t *testing.T, path, content string) { t.Helper(); testkit.WriteFile(t, path, content) }
