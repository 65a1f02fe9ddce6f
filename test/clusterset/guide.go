package clusterset

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/testkit"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/eastwest-dev/eastwest/test/cluster"
)

// Guides are the documents whose sh blocks Up runs, in this order: the
// install guide, then the networks guide's steps.
var Guides = []string{"docs/install.md", "docs/networks.md"}

// skipMarker, on the line before a fence, keeps a block from the run and
// says why: `<!-- not run by test/clusterset: it needs cert-manager -->`.
const skipMarker = "<!-- not run by test/clusterset: "

// block is one fenced sh block of a guide.
type block struct {
	file string
	line int    // the opening fence's line
	text string // the commands, without the fence's indentation
	skip string // why the test does not run it; "" runs it
}

// guideBlocks reads a guide's sh blocks. A block inside a list item is
// indented like its fence; the indentation is removed, as a reader
// copying it from the rendered page gets it.
func guideBlocks(file string, doc []byte) ([]block, error) {
	var out []block
	var cur *block
	var indent, prev string
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		trimmed := strings.TrimSpace(l)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			if trimmed != "```sh" {
				// Another language's block: skip to its end.
				cur = &block{file: file, line: n, skip: "-"}
				indent = l[:len(l)-len(strings.TrimLeft(l, " "))]
				continue
			}
			cur = &block{file: file, line: n}
			indent = l[:len(l)-len(strings.TrimLeft(l, " "))]
			if p := strings.TrimSpace(prev); strings.HasPrefix(p, skipMarker) {
				cur.skip = strings.TrimSuffix(strings.TrimPrefix(p, skipMarker), " -->")
			}
		case cur != nil && trimmed == "```":
			if cur.skip != "-" {
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil:
			if l != "" && !strings.HasPrefix(l, indent) {
				return nil, fmt.Errorf("%s:%d: a line of the block at line %d is indented less than its fence", file, n, cur.line)
			}
			cur.text += strings.TrimPrefix(l, indent) + "\n"
		}
		if trimmed != "" {
			prev = l
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: a block is not closed", file, cur.line)
	}
	return out, sc.Err()
}

// readGuide reads the sh blocks of a guide of the repository.
func readGuide(t testing.TB, guide string) []block {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(testkit.RepoRoot(), guide))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := guideBlocks(guide, doc)
	if err != nil {
		t.Fatal(err)
	}
	return blocks
}

// guideScript is the blocks to run as one shell session (a reader's
// terminal: a function or variable of one block is there for the next),
// stopping at the first failing command and naming its block.
func guideScript(blocks []block) (script string, ran, skipped []string) {
	var b strings.Builder
	b.WriteString("set -Eeuo pipefail\ntrap 'echo \"guide: a command of $GUIDE_BLOCK failed (exit $?)\" >&2' ERR\n")
	for _, bl := range blocks {
		at := fmt.Sprintf("%s:%d", bl.file, bl.line)
		if bl.skip != "" {
			skipped = append(skipped, at+": "+bl.skip)
			continue
		}
		ran = append(ran, at)
		fmt.Fprintf(&b, "\nGUIDE_BLOCK=%s; echo \"+++ %s\"\n%s", at, at, bl.text)
	}
	return b.String(), ran, skipped
}

// runGuides runs the guides' blocks as written, on the operator's
// machine: own's node (on the WAN, where every cluster's API server is
// reached at the address the control plane's pods reach it at too), in
// a folder of its own holding a link to the repository's deploy/, with
// ~/.kube/config naming the contexts own, east and west, and kubectl,
// helm, xds and openssl on PATH. Its output is in guide.log in cs.Dir.
func (cs *ClusterSet) runGuides(ctx context.Context, t testing.TB, helmBin string) {
	t.Helper()
	var blocks []block
	for _, g := range Guides {
		blocks = append(blocks, readGuide(t, g)...)
	}
	script, ran, skipped := guideScript(blocks)

	root := filepath.Join(cs.Dir, "operator")
	home, work, bin := filepath.Join(root, "home"), filepath.Join(root, "work"), filepath.Join(root, "bin")
	for _, d := range []string{filepath.Join(home, ".kube"), work, bin} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		filepath.Join(work, "deploy"): filepath.Join(testkit.RepoRoot(), "deploy"),
		filepath.Join(bin, "xds"):     cs.XDS,
		filepath.Join(bin, "helm"):    helmBin,
		filepath.Join(bin, "kubectl"): filepath.Join(cluster.DefaultBins().Kube, "kubectl"),
	}
	for link, target := range links {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	cs.writeOperatorKubeconfig(t, filepath.Join(home, ".kube", "config"))
	scriptFile := filepath.Join(root, "guide.sh")
	if err := os.WriteFile(scriptFile, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(cs.Dir, "guide.log")
	log, err := os.Create(logFile) //nolint:gosec // the test's own folder
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()

	start := time.Now()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", cs.Own.Node.Name, "bash", scriptFile) //nolint:gosec // the test's own script
	cmd.Dir = work
	cmd.Env = []string{"HOME=" + home, "PATH=" + bin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	cmd.Stdout, cmd.Stderr = log, log
	// Every process of the session goes with it, also when the test ends
	// it early.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	out, _ := os.ReadFile(logFile) //nolint:gosec // the test's own log
	if err != nil {
		cs.diagnose(t)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		t.Fatalf("the guides, run as written, failed after %v: %v; their output ends:\n%s", time.Since(start).Round(time.Second), err, strings.Join(lines[max(0, len(lines)-80):], "\n"))
	}
	t.Logf("the guides' %d blocks ran as written in %v (output: %s); not run:\n  %s", len(ran), time.Since(start).Round(time.Second), logFile, strings.Join(skipped, "\n  "))
}

// writeOperatorKubeconfig writes the operator's kubeconfig: one context
// per cluster, named after it, each reaching its API server at its WAN
// address; own is the current one.
func (cs *ClusterSet) writeOperatorKubeconfig(t testing.TB, path string) {
	t.Helper()
	out := clientcmdapi.NewConfig()
	for _, c := range cs.All {
		cfg, err := clientcmd.LoadFromFile(c.WANKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if err := clientcmdapi.FlattenConfig(cfg); err != nil {
			t.Fatal(err)
		}
		ctx := cfg.Contexts[cfg.CurrentContext]
		out.Clusters[c.Name] = cfg.Clusters[ctx.Cluster]
		out.AuthInfos[c.Name] = cfg.AuthInfos[ctx.AuthInfo]
		out.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: c.Name}
	}
	out.CurrentContext = cs.Own.Name
	if err := clientcmd.WriteToFile(*out, path); err != nil {
		t.Fatal(err)
	}
}
