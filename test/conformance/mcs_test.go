package conformance

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/testkit"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/test/cluster"
	"github.com/eastwest-dev/eastwest/test/kube"
)

var reportDir = flag.String("report-dir", "", "write the suite's report (report.html, report.yaml) into this folder (make conformance-report: docs/conformance)")

// The project as the report names it.
const (
	organization = "eastwest-dev"
	project      = "eastwest"
	projectURL   = "https://github.com/eastwest-dev/eastwest"
)

// The whole upstream MCS conformance suite, unmodified, passes against
// eastwest on two real clusters on one flat pod network: every spec of
// the report (the API's ServiceImports, conflicts and EndpointSlices;
// connectivity through the ClusterSet IP, by kube-proxy on the
// EndpointSlices the write-back writes; clusterset.local names for
// ClusterSetIP and headless services answered by each cluster's own
// CoreDNS with the project's Corefile) passes, none skipped.
func TestMCSConformance(t *testing.T) {
	root := testkit.RepoRoot()
	suiteDir := filepath.Join(root, "test", "conformance", "mcs-api")
	if err := checkSums(suiteDir); err != nil {
		t.Fatalf("the vendored suite is not the upstream one: %v", err)
	}
	work := t.TempDir()
	// The suite compiles (a minute or two cold) while the clusters boot.
	var suite string
	var suiteErr error
	var wg sync.WaitGroup
	wg.Go(func() { suite, suiteErr = buildSuite(suiteDir, work) })

	clusters := cluster.Start(t, "east", "west")
	cluster.Flat(t, clusters...)
	images := cluster.DebianImages(t)
	corefile, err := os.ReadFile(filepath.Join(root, "deploy", "coredns", "coredns.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	members := filepath.Join(work, "members")
	if err := os.MkdirAll(members, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range clusters {
		if err := c.Import(images); err != nil {
			t.Fatal(err)
		}
		if err := c.InstallCRDs(ctx, kube.MCSCRDs()...); err != nil {
			t.Fatal(err)
		}
		// The cluster's CoreDNS answers clusterset.local as the project
		// documents it (deploy/coredns: the Corefile and the RBAC).
		if err := c.ConfigureDNS(ctx, corefile); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(members, c.Name+".yaml"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cptest.StartWith(t, controlplane.Config{KubeconfigDir: members, WriteBack: true})
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := mergeKubeconfigs(kubeconfig, clusters); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if suiteErr != nil {
		t.Fatal(suiteErr)
	}

	run := filepath.Join(work, "run")
	if err := os.MkdirAll(run, 0o750); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(work, "suite.log")
	start := time.Now()
	err = runSuite(suite, run, log, kubeconfig, clusters)
	t.Logf("the suite ran %v (log: %s)", time.Since(start).Round(time.Second), log)
	rep, repErr := readReport(filepath.Join(run, "report.yaml"))
	if err != nil || repErr != nil {
		t.Errorf("the suite failed: %v; report: %v\n%s", err, repErr, tail(log, 120))
	}
	if rep != nil {
		t.Logf("report: %d of %d specs passed", rep.Passed, rep.Total)
		for _, g := range rep.Groups {
			for _, s := range g.Tests {
				if !s.Passed {
					t.Errorf("%s: %s: passed=%v skipped=%v failed=%v conformant=%v%s", g.Name, s.Desc, s.Passed, s.Skipped, s.Failed, s.Conformant, s.Message)
				}
			}
		}
		if rep.SuiteFailure != "" {
			t.Errorf("suite failure: %s", rep.SuiteFailure)
		}
		if rep.Total == 0 || rep.Passed != rep.Total {
			t.Errorf("%d of %d specs passed", rep.Passed, rep.Total)
		}
	}
	if *reportDir != "" {
		for _, f := range []string{"report.html", "report.yaml"} {
			b, err := os.ReadFile(filepath.Join(run, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(*reportDir, f), b, 0o644); err != nil { //nolint:gosec // a report for the docs
				t.Fatal(err)
			}
		}
		t.Logf("report written to %s", *reportDir)
	}
}

// report is what the suite writes to report.yaml.
type report struct {
	Passed       int    `json:"passed"`
	Total        int    `json:"total"`
	SuiteFailure string `json:"suitefailure"`
	Groups       []struct {
		Name  string `json:"name"`
		Tests []struct {
			Desc       string `json:"desc"`
			Passed     bool   `json:"passed"`
			Failed     bool   `json:"failed"`
			Skipped    bool   `json:"skipped"`
			Conformant bool   `json:"conformant"`
			Message    string `json:"message"`
		} `json:"tests"`
	} `json:"groups"`
}

func readReport(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r report
	if err := yaml.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// runSuite runs the compiled suite in dir (where it writes its report)
// against the clusters, its output into log.
func runSuite(suite, dir, log, kubeconfig string, clusters []*cluster.Cluster) error {
	names := make([]string, len(clusters))
	for i, c := range clusters {
		names[i] = c.Name
	}
	out, err := os.Create(log)
	if err != nil {
		return err
	}
	defer out.Close()
	version := strings.TrimSpace(run("git", "-C", testkit.RepoRoot(), "describe", "--tags", "--always"))
	cmd := exec.Command(suite, "-test.v", "-test.timeout", "50m", //nolint:gosec // the suite this test built
		"-ginkgo.v", "-ginkgo.no-color",
		"-kubeconfig", kubeconfig, "-contexts", strings.Join(names, ","),
		"-organization", organization, "-project", project, "-version", version, "-url", projectURL)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	// A hung suite is stopped with the test (its timeout is below ours).
	cmd.WaitDelay = time.Minute
	return cmd.Run()
}

func run(name string, args ...string) string {
	b, _ := exec.Command(name, args...).Output() //nolint:gosec // fixed commands
	return string(b)
}

// buildSuite assembles the suite's module as upstream has it (the suite
// in conformance/ of the mcs-api module, here the released one eastwest
// builds with) in work and compiles its test binary there.
func buildSuite(suiteDir, work string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/mcs-api").Output()
	if err != nil {
		return "", fmt.Errorf("go list sigs.k8s.io/mcs-api: %w", err)
	}
	mod := filepath.Join(work, "mcs-api")
	if err := copyTree(strings.TrimSpace(string(out)), mod); err != nil {
		return "", err
	}
	if err := copyTree(filepath.Join(suiteDir, "conformance"), filepath.Join(mod, "conformance")); err != nil {
		return "", err
	}
	bin := filepath.Join(work, "conformance.test")
	cmd := exec.Command("go", "test", "-c", "-o", bin, ".")
	cmd.Dir = filepath.Join(mod, "conformance")
	// The suite's go.sum may lack the sums of the released module's
	// requirements: let go add them to the copy.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("compile the suite: %w: %s", err, b)
	}
	return bin, nil
}

// copyTree copies a folder's files (made writable: the module cache's are
// read-only).
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o750)
		}
		b, err := os.ReadFile(path) //nolint:gosec // the module's files
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
}

// checkSums verifies the vendored suite against its SHA256SUMS.
func checkSums(dir string) error {
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return err
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			return fmt.Errorf("SHA256SUMS: bad line %q", sc.Text())
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) != sum {
			return fmt.Errorf("%s differs from the upstream file", name)
		}
		seen[name] = true
	}
	return filepath.WalkDir(filepath.Join(dir, "conformance"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if !seen[filepath.ToSlash(rel)] {
			return fmt.Errorf("%s is not upstream's (not in SHA256SUMS)", rel)
		}
		return nil
	})
}

// mergeKubeconfigs writes one kubeconfig with a context per cluster,
// named after it (the suite's -contexts).
func mergeKubeconfigs(path string, clusters []*cluster.Cluster) error {
	merged := clientcmdapi.NewConfig()
	for _, c := range clusters {
		cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
		if err != nil {
			return err
		}
		cur := cfg.Contexts[cfg.CurrentContext]
		if cur == nil {
			return fmt.Errorf("%s: no current context", c.Kubeconfig)
		}
		merged.Clusters[c.Name] = cfg.Clusters[cur.Cluster]
		merged.AuthInfos[c.Name] = cfg.AuthInfos[cur.AuthInfo]
		merged.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: c.Name}
		merged.CurrentContext = c.Name
	}
	return clientcmd.WriteToFile(*merged, path)
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path) //nolint:gosec // the test's log
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
