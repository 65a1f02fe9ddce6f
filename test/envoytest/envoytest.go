package envoytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/testkit"

	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/test/netns"
)

// Version is the Envoy release the tests run: the one go-control-plane's
// envoy module v1.40.0 was generated from.
const Version = "1.40.0"

// Bin returns the Envoy binary for tests: ENVOY_BIN, else the one
// test/tools/envoy.sh installed, else an envoy of Version on PATH. It
// fails the test, saying how to get one, when there is none: an Envoy
// test never skips silently.
func Bin(t testing.TB) string {
	t.Helper()
	var tried []string
	candidates := []string{os.Getenv("ENVOY_BIN"), filepath.Join(testkit.RepoRoot(), ".cache", "envoy", "envoy")}
	if p, err := exec.LookPath("envoy"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		out, err := exec.Command(c, "--version").CombinedOutput() //nolint:gosec // the test's own Envoy
		if err == nil && strings.Contains(string(out), "/"+Version+"/") {
			return c
		}
		tried = append(tried, fmt.Sprintf("%s (%v %s)", c, err, strings.TrimSpace(string(out))))
	}
	t.Fatalf("no Envoy %s: run `make envoy-bin` (test/tools/envoy.sh) or set ENVOY_BIN; tried %v", Version, tried)
	return ""
}

// repoRoot is the module's root folder.

// Shipped returns the path of a bootstrap in deploy/envoy.
func Shipped(name string) string { return filepath.Join(testkit.RepoRoot(), "deploy", "envoy", name) }

// TLS are the files of an Envoy's xDS client certificate.
type TLS struct {
	CertFile, KeyFile, CAFile string
	// ServerName is the name the control plane's certificate carries
	// (SNI and SAN check); the shipped bootstraps' is kept when empty.
	ServerName string
}

// Options say what a test changes in a shipped bootstrap.
type Options struct {
	// Bootstrap is the shipped bootstrap's path (Shipped("bootstrap.yaml")).
	Bootstrap string
	// NodeID and Cluster are --service-node and --service-cluster.
	NodeID, Cluster string
	// Gateway, when set, replaces node.metadata.gateway (<ns>/<name>).
	Gateway string
	// Zone, when set, is node.locality.sub_zone: the Kubernetes zone the
	// Envoy says it runs in.
	Zone string
	// XDS is the control plane's host:port.
	XDS string
	// Delta makes the ADS connection incremental (DELTA_GRPC).
	Delta bool
	// TLS is the client certificate; nil drops the transport socket
	// (a plaintext control plane on loopback).
	TLS *TLS
	// Args are more command-line arguments (--component-log-level, say).
	Args []string
	// NetNS, when set, runs Envoy inside that network namespace (its
	// admin endpoint on the namespace's veth address).
	NetNS *netns.NS
	// BootstrapFile, when set, is the bootstrap Envoy runs as it is (one
	// eastwest rendered: a provisioned Gateway's); Bootstrap, Gateway,
	// XDS, Delta and TLS are then not used.
	BootstrapFile string
	// FileSecrets are the SDS secrets the bootstrap reads from files, not
	// from eastwest (left out of what CheckAccepted compares).
	FileSecrets []string
	// AdminPort and StatsPort, when StatsPort is set, are the admin's port
	// and the shipped stats listener's (0.0.0.0:15090 and its admin
	// cluster, 127.0.0.1:9901, moved to the admin's address): Start
	// picks free ones, so that several Envoys run side by side. Without
	// StatsPort the stats listener and its admin cluster are left out.
	AdminPort, StatsPort int
}

// Bootstrap returns the shipped bootstrap at path changed as opts say,
// as JSON (which Envoy reads as YAML).
func Bootstrap(opts Options) ([]byte, error) {
	raw, err := os.ReadFile(opts.Bootstrap)
	if err != nil {
		return nil, err
	}
	var b map[string]any
	if err := yaml.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Bootstrap, err)
	}
	if opts.Gateway != "" {
		node, _ := b["node"].(map[string]any)
		meta, _ := node["metadata"].(map[string]any)
		if meta == nil {
			return nil, fmt.Errorf("%s has no node.metadata", opts.Bootstrap)
		}
		meta["gateway"] = opts.Gateway
	}
	if opts.Zone != "" {
		node, _ := b["node"].(map[string]any)
		if node == nil {
			return nil, fmt.Errorf("%s has no node", opts.Bootstrap)
		}
		node["locality"] = map[string]any{"sub_zone": opts.Zone}
	}
	dyn, _ := b["dynamic_resources"].(map[string]any)
	ads, _ := dyn["ads_config"].(map[string]any)
	if ads == nil {
		return nil, fmt.Errorf("%s has no dynamic_resources.ads_config", opts.Bootstrap)
	}
	if opts.Delta {
		ads["api_type"] = "DELTA_GRPC"
	}
	xds, err := xdsCluster(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Bootstrap, err)
	}
	if opts.XDS != "" {
		host, port, ok := strings.Cut(opts.XDS, ":")
		p, perr := strconv.Atoi(port)
		if !ok || perr != nil {
			return nil, fmt.Errorf("XDS %q is not host:port", opts.XDS)
		}
		xds["type"] = "STATIC"
		xds["load_assignment"] = map[string]any{"cluster_name": xds["name"], "endpoints": []any{map[string]any{"lb_endpoints": []any{
			map[string]any{"endpoint": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": host, "port_value": p}}}},
		}}}}
	}
	if opts.TLS == nil {
		delete(xds, "transport_socket")
	} else if err := setTLS(xds, opts.TLS); err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Bootstrap, err)
	}
	// Admin on a free port, written to --admin-address-path: loopback,
	// or the namespace's address the test reaches.
	admin := "127.0.0.1"
	if opts.NetNS != nil {
		admin = opts.NetNS.NSIP
	}
	b["admin"] = map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": admin, "port_value": opts.AdminPort}}}
	statsListener(b, admin, opts)
	return json.Marshal(b)
}

// statsListener moves the shipped stats listener and the admin cluster
// behind it to the test's ports (opts.StatsPort, opts.AdminPort on host),
// or leaves both out.
func statsListener(b map[string]any, host string, opts Options) {
	static, _ := b["static_resources"].(map[string]any)
	listeners, _ := static["listeners"].([]any)
	clusters, _ := static["clusters"].([]any)
	var keptL, keptC []any
	for _, l := range listeners {
		m, _ := l.(map[string]any)
		if m["name"] != "stats" {
			keptL = append(keptL, l)
			continue
		}
		if opts.StatsPort != 0 {
			m["address"] = map[string]any{"socket_address": map[string]any{"address": host, "port_value": opts.StatsPort}}
			keptL = append(keptL, m)
		}
	}
	for _, c := range clusters {
		m, _ := c.(map[string]any)
		if m["name"] != "admin" {
			keptC = append(keptC, c)
			continue
		}
		if opts.StatsPort != 0 {
			m["load_assignment"] = map[string]any{"cluster_name": "admin", "endpoints": []any{map[string]any{"lb_endpoints": []any{
				map[string]any{"endpoint": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": host, "port_value": opts.AdminPort}}}},
			}}}}
			keptC = append(keptC, m)
		}
	}
	if static == nil {
		return
	}
	if keptL == nil {
		delete(static, "listeners")
	} else {
		static["listeners"] = keptL
	}
	static["clusters"] = keptC
}

// freePort is a port nothing listens on at host now (in ns when set):
// the kernel's choice, let go at once.
func freePort(ns *netns.NS, host string) (int, error) {
	listen := func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	if ns != nil {
		listen = ns.Listen
	}
	l, err := listen(net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func xdsCluster(b map[string]any) (map[string]any, error) {
	static, _ := b["static_resources"].(map[string]any)
	clusters, _ := static["clusters"].([]any)
	for _, c := range clusters {
		if m, ok := c.(map[string]any); ok && m["name"] == "xds_cluster" {
			return m, nil
		}
	}
	return nil, errors.New("no static cluster xds_cluster")
}

// setTLS points the xds_cluster's TLS files at the test's.
func setTLS(xds map[string]any, tls *TLS) error {
	ts, _ := xds["transport_socket"].(map[string]any)
	tc, _ := ts["typed_config"].(map[string]any)
	common, _ := tc["common_tls_context"].(map[string]any)
	if common == nil {
		return errors.New("xds_cluster has no TLS transport socket")
	}
	common["tls_certificates"] = []any{map[string]any{
		"certificate_chain": map[string]any{"filename": tls.CertFile},
		"private_key":       map[string]any{"filename": tls.KeyFile},
	}}
	vc, _ := common["validation_context"].(map[string]any)
	if vc == nil {
		return errors.New("xds_cluster's TLS has no validation_context")
	}
	vc["trusted_ca"] = map[string]any{"filename": tls.CAFile}
	if tls.ServerName != "" {
		tc["sni"] = tls.ServerName
		vc["match_typed_subject_alt_names"] = []any{map[string]any{"san_type": "DNS", "matcher": map[string]any{"exact": tls.ServerName}}}
	}
	return nil
}

// Validate runs `envoy --mode validate` on a bootstrap file, with the
// node's id and cluster on the command line as the bootstraps document.
func Validate(t testing.TB, path, nodeID, cluster string) error {
	t.Helper()
	cmd := exec.Command(Bin(t), "--mode", "validate", "-c", path, "--disable-hot-restart", "--log-level", "warn", //nolint:gosec // the test's own Envoy and file
		"--service-node", nodeID, "--service-cluster", cluster, "--service-zone", cluster)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("envoy --mode validate %s: %w\n%s", path, err, out)
	}
	return nil
}

// Envoy is a running Envoy.
type Envoy struct {
	// Admin is the admin endpoint's host:port.
	Admin string
	// StatsAddr is the shipped stats listener's host:port (a scraper's
	// /stats/prometheus); empty for a bootstrap given as it is.
	StatsAddr string
	// Dir holds its bootstrap and log.
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	// fileSecrets are Options.FileSecrets.
	fileSecrets []string
}

// Start starts Envoy with the shipped bootstrap changed as opts say, and
// returns once its admin endpoint answers. Envoy is stopped when the test
// ends; if the test failed, the end of its log is printed.
func Start(t testing.TB, opts Options) *Envoy {
	t.Helper()
	bin := Bin(t)
	dir := t.TempDir()
	bootFile := opts.BootstrapFile
	var statsAddr string
	if bootFile == "" {
		host := "127.0.0.1"
		if opts.NetNS != nil {
			host = opts.NetNS.NSIP
		}
		var err error
		if opts.AdminPort, err = freePort(opts.NetNS, host); err != nil {
			t.Fatal(err)
		}
		if opts.StatsPort, err = freePort(opts.NetNS, host); err != nil {
			t.Fatal(err)
		}
		statsAddr = net.JoinHostPort(host, strconv.Itoa(opts.StatsPort))
		boot, err := Bootstrap(opts)
		if err != nil {
			t.Fatal(err)
		}
		bootFile = filepath.Join(dir, "bootstrap.yaml")
		if err := os.WriteFile(bootFile, boot, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logFile, err := os.Create(filepath.Join(dir, "envoy.log"))
	if err != nil {
		t.Fatal(err)
	}
	adminPath := filepath.Join(dir, "admin-address")
	args := []string{"-c", bootFile, "--disable-hot-restart", "--admin-address-path", adminPath,
		"--service-node", opts.NodeID, "--service-cluster", opts.Cluster, "--service-zone", opts.Cluster, "--log-level", "info",
		"--concurrency", "1", "--drain-time-s", "1", "--parent-shutdown-time-s", "2"}
	args = append(args, opts.Args...)
	cmd := exec.Command(bin, args...) //nolint:gosec // the test's own Envoy
	if opts.NetNS != nil {
		cmd = opts.NetNS.Command(bin, args...)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatal(err)
	}
	e := &Envoy{Dir: dir, StatsAddr: statsAddr, cmd: cmd, done: make(chan struct{}), fileSecrets: opts.FileSecrets}
	go func() { e.err = cmd.Wait(); _ = logFile.Close(); close(e.done) }()
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("envoy log (%s), last lines:\n%s", opts.NodeID, e.LogTail(40))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(adminPath); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			e.Admin = strings.TrimSpace(string(b))
			if _, err := e.Get("/server_info"); err == nil {
				return e
			}
		}
		select {
		case <-e.done:
			t.Fatalf("envoy exited: %v\n%s", e.err, e.LogTail(40))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("envoy admin not up after 20s\n%s", e.LogTail(40))
		}
	}
}

// Stop ends Envoy: SIGTERM, then SIGKILL after five seconds.
func (e *Envoy) Stop() {
	select {
	case <-e.done:
		return
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.done
	}
}

// Exited reports whether the process has ended.
func (e *Envoy) Exited() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// LogTail returns the last n lines of Envoy's log.
func (e *Envoy) LogTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "envoy.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Get reads an admin path.
func (e *Envoy) Get(path string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + e.Admin + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// Ready reports whether Envoy finished initializing (/ready says LIVE).
func (e *Envoy) Ready() bool {
	body, err := e.Get("/ready")
	return err == nil && strings.TrimSpace(body) == "LIVE"
}

// Stats returns Envoy's counters and gauges by name.
func (e *Envoy) Stats() (map[string]int64, error) {
	body, err := e.Get("/stats")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for line := range strings.SplitSeq(body, "\n") {
		name, val, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64); err == nil {
			out[name] = n
		}
	}
	return out, nil
}

// Rejected returns the stats of updates Envoy rejected that are not zero.
func (e *Envoy) Rejected() (map[string]int64, error) {
	stats, err := e.Stats()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for name, v := range stats {
		if strings.HasSuffix(name, ".update_rejected") && v != 0 {
			out[name] = v
		}
	}
	return out, nil
}

// Dumped is what Envoy's config_dump holds of the dynamic resources, by
// short type (cds, eds, lds, rds, sds) then name, with each resource's
// version_info.
type Dumped map[string]map[string]string

// ConfigDump reads /config_dump?include_eds: the dynamic resources Envoy
// accepted (active, and warming ones too), and the listeners that failed.
func (e *Envoy) ConfigDump() (Dumped, []string, error) {
	body, err := e.Get("/config_dump?include_eds")
	if err != nil {
		return nil, nil, err
	}
	var dump struct {
		Configs []map[string]json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal([]byte(body), &dump); err != nil {
		return nil, nil, err
	}
	out := Dumped{"cds": {}, "eds": {}, "lds": {}, "rds": {}, "sds": {}}
	var failed []string
	type named struct {
		Version string `json:"version_info"`
		Name    string `json:"name"`
		Cluster struct {
			Name string `json:"name"`
		} `json:"cluster"`
		RouteConfig struct {
			Name string `json:"name"`
		} `json:"route_config"`
		EndpointConfig struct {
			ClusterName string `json:"cluster_name"`
		} `json:"endpoint_config"`
		ActiveState *struct {
			Version string `json:"version_info"`
		} `json:"active_state"`
		WarmingState *struct {
			Version string `json:"version_info"`
		} `json:"warming_state"`
		ErrorState *struct {
			Details string `json:"details"`
		} `json:"error_state"`
	}
	read := func(raw json.RawMessage) []named {
		var list []named
		_ = json.Unmarshal(raw, &list)
		return list
	}
	for _, c := range dump.Configs {
		var typ string
		_ = json.Unmarshal(c["@type"], &typ)
		switch {
		case strings.HasSuffix(typ, "ClustersConfigDump"):
			for _, n := range append(read(c["dynamic_active_clusters"]), read(c["dynamic_warming_clusters"])...) {
				out["cds"][n.Cluster.Name] = n.Version
			}
		case strings.HasSuffix(typ, "EndpointsConfigDump"):
			for _, n := range read(c["dynamic_endpoint_configs"]) {
				out["eds"][n.EndpointConfig.ClusterName] = n.Version
			}
		case strings.HasSuffix(typ, "ListenersConfigDump"):
			for _, n := range read(c["dynamic_listeners"]) {
				switch {
				case n.ActiveState != nil:
					out["lds"][n.Name] = n.ActiveState.Version
				case n.WarmingState != nil:
					out["lds"][n.Name] = n.WarmingState.Version
				}
				if n.ErrorState != nil {
					failed = append(failed, n.Name+": "+n.ErrorState.Details)
				}
			}
		case strings.HasSuffix(typ, "RoutesConfigDump"):
			for _, n := range read(c["dynamic_route_configs"]) {
				out["rds"][n.RouteConfig.Name] = n.Version
			}
		case strings.HasSuffix(typ, "SecretsConfigDump"):
			for _, n := range append(read(c["dynamic_active_secrets"]), read(c["dynamic_warming_secrets"])...) {
				out["sds"][n.Name] = n.Version
			}
		}
	}
	return out, failed, nil
}
