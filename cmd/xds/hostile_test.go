package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/eastwest-dev/eastwest/internal/cptest"
)

// mainEnv makes the test binary run xds itself (see TestMain), so that
// tests can start, signal and stop a real `xds serve` process.
const mainEnv = "EASTWEST_TEST_RUN_XDS"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// serveProcess is `xds serve` running as a process of its own.
type serveProcess struct {
	cmd         *exec.Cmd
	xds, debug  string
	exited      chan struct{}
	waitErr     error
	stderrLines chan string
}

// startServeProcess starts `xds serve args...` and waits until it says
// where it serves; the process is killed when the test ends.
func startServeProcess(t *testing.T, args ...string) *serveProcess {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{"serve", "--xds-address", "127.0.0.1:0", "--debug-address", "127.0.0.1:0"}, args...)...) //nolint:gosec // this very test binary, as xds
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, exited: make(chan struct{}), stderrLines: make(chan string, 1024)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	serving := regexp.MustCompile(`msg=serving xds=(\S+) debug=(\S+)`)
	found := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := serving.FindStringSubmatch(line); m != nil {
				found <- [2]string{m[1], m[2]}
			}
			select {
			case p.stderrLines <- line:
			default:
			}
			if testing.Verbose() {
				t.Log(line)
			}
		}
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	select {
	case addrs := <-found:
		p.xds, p.debug = addrs[0], addrs[1]
	case <-p.exited:
		t.Fatalf("xds serve exited: %v", p.waitErr)
	case <-time.After(30 * time.Second):
		t.Fatal("xds serve did not start within 30s")
	}
	return p
}

func httpGet(url string, timeout time.Duration) (int, string, error) {
	c := http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// Written elsewhere and renamed in, as a GitOps checkout does.
		tmp := filepath.Join(filepath.Dir(to), "."+e.Name())
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(to, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// The attack that once wedged the whole control plane: a delta client
// claiming a member that does not exist yet floods made-up type URLs and
// re-requests every real type without ever reading its stream. When the
// member joins, the server keeps publishing, other clients converge, the
// debug endpoint answers, /healthz stays honest, and SIGTERM ends the
// process within the drain timeout.
func TestNonReadingClientCannotWedgeTheServer(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, "../../examples/clusterset/east", filepath.Join(dir, "east"))
	p := startServeProcess(t, "--dir", dir, "--drain-timeout", "1s")

	conn, err := grpc.NewClient(p.xds, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	gatewayOf := func(cluster string) *corev3.Node {
		return &corev3.Node{Id: "attacker-" + cluster, Cluster: cluster,
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"role": structpb.NewStringValue("gateway")}}}
	}
	// Junk types: refused at the first one (the stream ends with an error).
	junk, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if junk.Send(&discoveryv3.DeltaDiscoveryRequest{Node: gatewayOf("west"), TypeUrl: fmt.Sprintf("type.googleapis.com/junk.T%d", i)}) != nil {
			break // the server ended the stream
		}
	}
	// Real types, re-requested again and again, never read.
	for range 3 {
		stream, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.SecretType} {
				if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: gatewayOf("west"), TypeUrl: typ}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	// The member joins while those streams sit unread.
	copyDir(t, "../../examples/clusterset/west", filepath.Join(dir, "west"))

	// Another client converges on the new member's gateway listener.
	good, err := grpc.NewClient(p.xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("a well-behaved client of the new member got no listener within 20s")
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := cptest.DeltaFirst(rctx, good, &corev3.Node{Id: "good", Cluster: "west",
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"role": structpb.NewStringValue("gateway")}}}, resourcev3.ListenerType)
		rcancel()
		if err == nil && len(resp.GetResources()) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, path := range []string{"/debug/config_dump?node=good", "/debug/syncz", "/healthz", "/readyz"} {
		code, body, err := httpGet("http://"+p.debug+path, 5*time.Second)
		if err != nil || (path != "/debug/config_dump?node=good" && code != http.StatusOK) {
			t.Errorf("GET %s: %d %v %.200s", path, code, err, body)
		}
	}
	code, body, err := httpGet("http://"+p.debug+"/metrics", 5*time.Second)
	if err != nil || code != 200 || !strings.Contains(body, `eastwest_xds_refused_total{reason="unsupported_type"}`) {
		t.Errorf("the refusal is not counted in /metrics: %d %v", code, err)
	}

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if took := time.Since(start); took > 1*time.Second+3*time.Second {
			t.Errorf("SIGTERM took %v, more than the drain timeout and margin", took)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("xds serve did not stop within 15s of SIGTERM")
	}
}

// The control plane's shipped Deployment passes only flags `xds serve`
// has (a flag it lacks stops the pod at start).
func TestShippedDeploymentArgsAreServeFlags(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/control-plane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "- serve":
			in = true
		case in && strings.HasPrefix(trimmed, "- --"):
			arg, _, _ := strings.Cut(strings.TrimPrefix(trimmed, "- "), " ")
			args = append(args, arg)
		case in && !strings.HasPrefix(trimmed, "#"):
			in = false
		}
	}
	if len(args) < 5 {
		t.Fatalf("found only %v in the Deployment", args)
	}
	var stderr strings.Builder
	fs, _ := serveFlags(&stderr)
	if err := fs.Parse(args); err != nil {
		t.Errorf("xds serve %v: %v", args, err)
	}
}

// `xds status` ends with the requests refused recently and why.
func TestStatusListsRefusals(t *testing.T) {
	app := startServe(t)
	conn, err := grpc.NewClient(app.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cptest.DeltaFirst(ctx, conn, &corev3.Node{Id: "prober", Cluster: "east"}, "type.googleapis.com/made.Up"); err == nil {
		t.Fatal("a made-up type was answered")
	}
	var stdout, stderr strings.Builder
	if code := run([]string{"status", "--debug-address", app.DebugAddr()}, &stdout, &stderr); code != 0 {
		t.Fatalf("xds status: %d %s", code, stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "Refused recently") || !strings.Contains(out, "prober") || !strings.Contains(out, "unsupported_type") {
		t.Errorf("xds status does not show the refusal:\n%s", out)
	}
}
