package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/test/kube"
	"github.com/eastwest-dev/eastwest/test/netns"
)

// The addresses every cluster shares: each node is a namespace of its
// own, so they never meet.
const (
	ServiceCIDR = "10.96.0.0/16"
	// APIServiceIP is the kubernetes Service's ClusterIP, DNSServiceIP
	// CoreDNS's.
	APIServiceIP = "10.96.0.1"
	DNSServiceIP = "10.96.0.10"
	// SandboxImage is the pause image containerd runs every pod's
	// sandbox from (containerd v2.4's default, built here).
	SandboxImage = "registry.k8s.io/pause:3.10.2"
)

// Cluster is one running one-node cluster.
type Cluster struct {
	Name string
	// Dir holds its data, certificates, configuration and logs.
	Dir string
	// Node is the node's network namespace; Node.NSIP is the node's IP
	// (where the apiserver listens), Node.HostIP the test's end.
	Node *netns.NS
	// NodeName is the Node object's name.
	NodeName string
	// PodCIDR is the node's pods' addresses.
	PodCIDR string
	// WAN is the node's address on the WAN that joins separate networks
	// (Options.Separate or Networks; empty otherwise), where its
	// apiserver also listens; WANKubeconfig is the admin kubeconfig that
	// reaches the apiserver there (from another network's pods).
	WAN, WANKubeconfig string
	// Network is the cluster's network (Options.Networks).
	Network string
	// LoadBalancerPool is where its load balancer gives each LoadBalancer
	// Service an address of its own, routed to the node from the test's
	// namespace (not on separate networks: there every Service gets WAN).
	LoadBalancerPool netip.Prefix
	separate         bool
	// Kubeconfig is an admin kubeconfig (system:masters).
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface

	ca     *cptest.CA
	bin    Bins
	cgroup string // the kubelet's cgroup root, in every hierarchy

	mu    sync.Mutex
	procs []*kube.Process // in start order; stopped in reverse
	// apiserver and etcd are among procs: killed at the teardown.
	apiserver, etcd *kube.Process
	// stopLB stops serveLoadBalancers and waits for it.
	stopLB func()
	// phases are the boot's steps and when each ended.
	phases []string
}

// Bins are the folders of the harness's binaries.
type Bins struct {
	// Kube holds etcd and the Kubernetes commands (make kube-bins
	// node-bins), Node containerd, its shim and ctr (make node-bins).
	Kube, Node string
	// CNI holds the CNI plugins (Debian's containernetworking-plugins).
	CNI string
}

// DefaultBins are where make puts the binaries (EASTWEST_KUBE_BIN
// overrides the Kubernetes folder, as for test/kube).
func DefaultBins() Bins {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", ".cache")
	return Bins{Kube: kube.BinDir(), Node: filepath.Join(root, "node"), CNI: "/usr/lib/cni"}
}

// Check says what is missing to run real-node clusters: root, and the
// binaries make node-bins builds.
func (b Bins) Check() error {
	if os.Geteuid() != 0 {
		return errors.New("real-node clusters need root (CI runs as root)")
	}
	var missing []string
	for _, f := range []string{
		filepath.Join(b.Kube, "etcd"), filepath.Join(b.Kube, "kube-apiserver"), filepath.Join(b.Kube, "kube-controller-manager"),
		filepath.Join(b.Kube, "kube-scheduler"), filepath.Join(b.Kube, "kubelet"), filepath.Join(b.Kube, "kube-proxy"),
		filepath.Join(b.Node, "containerd"), filepath.Join(b.Node, "containerd-shim-runc-v2"), filepath.Join(b.Node, "ctr"),
		filepath.Join(b.CNI, "bridge"), filepath.Join(b.CNI, "host-local"), filepath.Join(b.CNI, "loopback"),
	} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	for _, c := range []string{"runc", "iptables", "conntrack", "nsenter", "ip"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: run `make node-bins`", strings.Join(missing, ", "))
	}
	return nil
}

// Options configure StartWith.
type Options struct {
	// Separate puts the clusters on separate networks: every cluster's
	// pods in the same CIDR (SeparatePodCIDR, as clusters on networks of
	// their own often are), and the nodes joined only by a WAN (their
	// WAN addresses), never by pod IP; the test's namespace has no route
	// to the pods.
	Separate bool
	// Networks names each cluster's network, in the order of the names
	// (Separate is the same as a network per cluster). Clusters on one
	// network share a flat pod network (distinct pod CIDRs, routed between
	// their nodes, as Flat does); networks meet only over the WAN that
	// joins every node, and their pod CIDRs overlap (each network's
	// clusters take 10.64.0.0/24, 10.65.0.0/24, ... in order). Pods reach
	// the WAN masqueraded as their node's WAN address, as a cloud's nodes
	// send them out.
	Networks []string
}

// SeparatePodCIDR is every cluster's pod CIDR on separate networks.
const SeparatePodCIDR = "10.64.0.0/24"

// Start starts one cluster per name, side by side, and tears them down
// when the test ends. Their pod CIDRs are distinct (10.<64+i>.0.0/24),
// routed from the test's namespace.
func Start(t testing.TB, names ...string) []*Cluster {
	t.Helper()
	return StartWith(t, Options{}, names...)
}

// StartWith starts clusters as Start does, configured by opts.
func StartWith(t testing.TB, opts Options, names ...string) []*Cluster {
	t.Helper()
	bins := DefaultBins()
	if err := bins.Check(); err != nil {
		t.Fatal(err)
	}
	holdMachine(t)
	if swept := sweepStale(); len(swept) > 0 {
		t.Logf("swept the clusters of test processes that died before their cleanup: %v", swept)
	}
	images, err := BaseImages(t)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*Cluster, len(names))
	for i, name := range names {
		c := &Cluster{Name: name, Dir: filepath.Join(t.TempDir(), name), bin: bins, NodeName: "node-" + name,
			PodCIDR: fmt.Sprintf("10.%d.0.0/24", 64+i), cgroup: "ewc-" + name + "-" + randomID()}
		c.Node = netns.New(t)
		t.Cleanup(func() { c.teardown(t) })
		out[i] = c
	}
	if opts.Separate && opts.Networks == nil {
		opts.Networks = names
	}
	var wanNS []string
	if opts.Networks != nil {
		if len(opts.Networks) != len(names) {
			t.Fatalf("%d networks for %d clusters", len(opts.Networks), len(names))
		}
		wan := netns.NewWAN(t)
		wanNS = append(wanNS, wan.Namespace())
		onNetwork := map[string][]*Cluster{}
		for i, c := range out {
			c.Network, c.separate = opts.Networks[i], true
			c.PodCIDR = fmt.Sprintf("10.%d.0.0/24", 64+len(onNetwork[c.Network]))
			onNetwork[c.Network] = append(onNetwork[c.Network], c)
			c.WAN = wan.Join(t, c.Node)
		}
		for _, n := range opts.Networks {
			Flat(t, onNetwork[n]...)
			delete(onNetwork, n)
		}
	}
	for _, c := range out {
		if err := c.writeRecord(append([]string{c.Node.Name}, wanNS...)...); err != nil {
			t.Fatal(err)
		}
	}
	errs := make([]error, len(out))
	var wg sync.WaitGroup
	for i, c := range out {
		wg.Go(func() { errs[i] = c.boot(t, images) })
	}
	wg.Wait()
	for _, c := range out {
		t.Logf("cluster %s booted: %s", c.Name, strings.Join(c.phases, ", "))
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start clusters: %v", err)
	}
	return out
}

func randomID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// nodeRun starts a daemon in the node's network namespace only (not a
// mount namespace of its own, which ip netns exec would make: the
// kubelet's mounts must be containerd's too).
func (c *Cluster) nodeRun(log, bin string, args ...string) (*kube.Process, error) {
	p, err := kube.Run(c.Dir, log, "nsenter", append([]string{"--net=/run/netns/" + c.Node.Name, "--", bin}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", c.Name, log, err)
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// inNode runs a command to completion in the node's namespace.
func (c *Cluster) inNode(name string, args ...string) error {
	out, err := exec.Command("ip", append([]string{"netns", "exec", c.Node.Name, name}, args...)...).CombinedOutput() //nolint:gosec // the harness's commands
	if err != nil {
		return fmt.Errorf("%s: %s %s: %w: %s", c.Name, name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *Cluster) boot(t testing.TB, images string) error {
	for _, d := range []string{"etcd", "containerd", "kubelet", "cni/net.d", "cni/ipam", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o750); err != nil {
			return err
		}
	}
	nodeIP := c.Node.NSIP
	// The node: forwarding and bridge netfilter (kube-proxy's rules see
	// bridged traffic), the Service CIDR routed out (so that its
	// addresses are routable before kube-proxy rewrites them), the pods
	// routed in from the test's namespace.
	for _, cmd := range [][]string{
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"},
		{"ip", "route", "add", ServiceCIDR, "via", c.Node.HostIP},
	} {
		if err := c.inNode(cmd[0], cmd[1:]...); err != nil {
			return err
		}
	}
	if c.separate {
		// Pods reach other networks as the node (their addresses mean
		// nothing there, and may be another network's own).
		_, wan, err := net.ParseCIDR(c.WAN + "/24")
		if err != nil {
			return err
		}
		if err := c.inNode("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", c.PodCIDR, "-d", wan.String(), "-j", "MASQUERADE"); err != nil {
			return err
		}
	}
	if !c.separate {
		if out, err := exec.Command("ip", "route", "replace", c.PodCIDR, "via", nodeIP).CombinedOutput(); err != nil { //nolint:gosec // the harness's addresses
			return fmt.Errorf("%s: route to the pods: %w: %s", c.Name, err, out)
		}
		if err := c.claimLoadBalancerPool(); err != nil {
			return err
		}
	}
	if err := c.pki(t); err != nil {
		return err
	}
	if err := c.cgroups(); err != nil {
		return err
	}
	// containerd and the images' import need no apiserver: they run
	// beside etcd's and the apiserver's start (the kubelet waits for
	// both).
	began := time.Now()
	runtimeDone := make(chan error, 1)
	go func() {
		err := c.startContainerd(images)
		c.phase("containerd and images", began)
		runtimeDone <- err
	}()
	waitRuntime := sync.OnceValue(func() error { return <-runtimeDone })
	defer func() { _ = waitRuntime() }() // never leave it starting processes after boot returns
	etcd, err := c.nodeRun("etcd", filepath.Join(c.bin.Kube, "etcd"), "--name", c.Name, "--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", c.Name+"=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.etcd = etcd
	c.mu.Unlock()
	bind := nodeIP
	if c.WAN != "" {
		bind = "0.0.0.0" // the node's address and its WAN address
	}
	apiserver, err := c.nodeRun("kube-apiserver", filepath.Join(c.bin.Kube, "kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", bind, "--advertise-address", nodeIP, "--secure-port", "6443",
		"--tls-cert-file", c.file("apiserver.crt"), "--tls-private-key-file", c.file("apiserver.key"),
		"--client-ca-file", c.ca.File,
		"--kubelet-client-certificate", c.file("apiserver-kubelet.crt"), "--kubelet-client-key", c.file("apiserver-kubelet.key"),
		"--kubelet-certificate-authority", c.ca.File,
		"--kubelet-preferred-address-types", "InternalIP",
		"--authorization-mode", "Node,RBAC",
		"--service-account-key-file", c.file("sa.pub"),
		"--service-account-signing-key-file", c.file("sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range", ServiceCIDR,
		"--allow-privileged=true",
	)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.apiserver = apiserver
	c.mu.Unlock()
	if err := kube.WaitHTTP("https://"+nodeIP+":6443/readyz", func() (*http.Client, http.Header) {
		return c.httpClient(), nil
	}, 90*time.Second, apiserver); err != nil {
		return fmt.Errorf("%s: kube-apiserver: %w (log: %s)", c.Name, err, filepath.Join(c.Dir, "kube-apiserver.log"))
	}
	c.phase("etcd and kube-apiserver", began)
	if _, err := c.nodeRun("kube-controller-manager", filepath.Join(c.bin.Kube, "kube-controller-manager"),
		"--kubeconfig", c.Kubeconfig, "--authentication-kubeconfig", c.Kubeconfig, "--authorization-kubeconfig", c.Kubeconfig,
		"--service-account-private-key-file", c.file("sa.key"), "--root-ca-file", c.ca.File,
		"--use-service-account-credentials=true", "--leader-elect=false", "--bind-address", "127.0.0.1",
		"--cluster-cidr", c.PodCIDR, "--service-cluster-ip-range", ServiceCIDR); err != nil {
		return err
	}
	if _, err := c.nodeRun("kube-scheduler", filepath.Join(c.bin.Kube, "kube-scheduler"),
		"--kubeconfig", c.Kubeconfig, "--authentication-kubeconfig", c.Kubeconfig, "--authorization-kubeconfig", c.Kubeconfig,
		"--leader-elect=false", "--bind-address", "127.0.0.1"); err != nil {
		return err
	}
	if err := waitRuntime(); err != nil {
		return err
	}
	if err := c.startKubelet(); err != nil {
		return err
	}
	if _, err := c.nodeRun("kube-proxy", filepath.Join(c.bin.Kube, "kube-proxy"),
		"--kubeconfig", c.Kubeconfig, "--hostname-override", c.NodeName, "--proxy-mode", "iptables",
		"--cluster-cidr", c.PodCIDR,
		// Leave the host's conntrack sysctls alone (they are global).
		"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0",
		"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256"); err != nil {
		return err
	}
	if err := c.waitNodeReady(3 * time.Minute); err != nil {
		return err
	}
	c.phase("node Ready", began)
	lbCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.serveLoadBalancers(lbCtx)
	}()
	c.mu.Lock()
	c.stopLB = func() { cancel(); <-done }
	c.mu.Unlock()
	if err := c.startDNS(context.Background()); err != nil {
		return fmt.Errorf("%s: CoreDNS: %w", c.Name, err)
	}
	_, err = c.podsReady("kube-system", "k8s-app=kube-dns", 1, 3*time.Minute)
	c.phase("CoreDNS Ready", began)
	return err
}

// phase records how long after began a step of the boot ended (logged
// by StartWith: where a slow start spends its time).
func (c *Cluster) phase(name string, began time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.phases = append(c.phases, fmt.Sprintf("%s %.1fs", name, time.Since(began).Seconds()))
}

// file is a path in the cluster's folder.
func (c *Cluster) file(name string) string { return filepath.Join(c.Dir, name) }

// pki issues the cluster's certificates (a CA of its own) and writes the
// kubeconfigs and the service account key.
func (c *Cluster) pki(t testing.TB) error {
	c.ca = cptest.NewCA(t)
	nodeIP := c.Node.NSIP
	ips := []string{nodeIP, APIServiceIP, "127.0.0.1"}
	if c.WAN != "" {
		ips = append(ips, c.WAN)
	}
	leaves := map[string]cptest.Leaf{
		"apiserver": c.ca.Kubernetes(t, "kube-apiserver", nil, ips,
			[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}),
		"apiserver-kubelet": c.ca.Kubernetes(t, "kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil),
		"admin":             c.ca.Kubernetes(t, "admin", []string{"system:masters"}, nil, nil),
		"kubelet":           c.ca.Kubernetes(t, "system:node:"+c.NodeName, []string{"system:nodes"}, []string{nodeIP}, []string{c.NodeName}),
	}
	for name, l := range leaves {
		cert, key := l.PEM(t)
		if err := os.WriteFile(c.file(name+".crt"), []byte(cert), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(c.file(name+".key"), []byte(key), 0o600); err != nil {
			return err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.file("sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(c.file("sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return err
	}
	server := "https://" + nodeIP + ":6443"
	c.Kubeconfig = c.file("admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, server, c.ca.File, c.file("admin.crt"), c.file("admin.key")); err != nil {
		return err
	}
	if err := writeKubeconfig(c.file("kubelet.kubeconfig"), server, c.ca.File, c.file("kubelet.crt"), c.file("kubelet.key")); err != nil {
		return err
	}
	if c.WAN != "" {
		c.WANKubeconfig = c.file("admin-wan.kubeconfig")
		if err := writeKubeconfig(c.WANKubeconfig, "https://"+c.WAN+":6443", c.ca.File, c.file("admin.crt"), c.file("admin.key")); err != nil {
			return err
		}
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return err
	}
	c.Client, err = kubernetes.NewForConfig(c.Config)
	return err
}

func writeKubeconfig(path, server, ca, cert, key string) error {
	return os.WriteFile(path, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: u, user: {client-certificate: %q, client-key: %q}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, server, ca, cert, key), 0o600)
}

func (c *Cluster) httpClient() *http.Client {
	cfg := rest.CopyConfig(c.Config)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil
	}
	hc.Timeout = 2 * time.Second
	return hc
}

// waitNodeReady waits for the node to say Ready.
func (c *Cluster) waitNodeReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
		if err == nil {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					if cond.Status == corev1.ConditionTrue {
						return nil
					}
					last = cond.Message
				}
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: node %s not Ready after %v: %s (logs in %s)", c.Name, c.NodeName, timeout, last, c.Dir)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// v1Hierarchies are the cgroup v1 hierarchies the kubelet's cgroup root
// must exist in, and the unified one.
func v1Hierarchies() []string {
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return out
}

// cgroups makes the kubelet's cgroup root in every hierarchy (cpuset's
// with its parent's CPUs and memory nodes), and one for the runtime
// (containerd and its shims), which the kubelet does not manage.
func (c *Cluster) cgroups() error {
	for _, h := range v1Hierarchies() {
		for _, g := range []string{c.cgroup, c.cgroup + "-runtime"} {
			dir := filepath.Join(h, g)
			if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) { //nolint:gosec // a cgroup
				return err
			}
			if filepath.Base(h) == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					b, err := os.ReadFile(filepath.Join(h, f))
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil { //nolint:gosec // a cgroup file
						return err
					}
				}
			}
		}
	}
	return nil
}

// intoRuntimeCgroup moves a process (and so what it starts) into the
// runtime's cgroups.
func (c *Cluster) intoRuntimeCgroup(pid int) error {
	for _, h := range v1Hierarchies() {
		if err := os.WriteFile(filepath.Join(h, c.cgroup+"-runtime", "cgroup.procs"), fmt.Appendf(nil, "%d", pid), 0o644); err != nil { //nolint:gosec // a cgroup file
			return fmt.Errorf("%s: %w", h, err)
		}
	}
	return nil
}

// teardown stops everything the cluster started and removes what it
// made, whatever state the boot reached.
func (c *Cluster) teardown(t testing.TB) {
	if t.Failed() {
		// The folder goes with the test: say what its logs end with.
		logs, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("%s: %s ends:\n%s", c.Name, filepath.Base(l), strings.Join(lines[max(0, len(lines)-12):], "\n"))
		}
	}
	c.mu.Lock()
	procs := slices.Clone(c.procs)
	c.procs = nil
	stopLB := c.stopLB
	c.stopLB = nil
	c.mu.Unlock()
	if stopLB != nil {
		stopLB()
	}
	slices.Reverse(procs)
	// The kubelet and kube-proxy first, then every container and shim (by
	// their cgroups), then the rest.
	// The control plane's servers hold nothing outside the cluster's
	// folder: killed (kube-apiserver with clients takes over 10 s to
	// stop gracefully). The node's daemons stop as they would.
	for _, p := range procs {
		if p == c.apiserver || p == c.etcd {
			p.Kill()
		} else {
			p.Stop()
		}
	}
	for _, g := range []string{c.cgroup, c.cgroup + "-runtime"} {
		killCgroup(g)
	}
	unmountUnder(c.Dir)
	removeCgroups(c.cgroup)
	removeCgroups(c.cgroup + "-runtime")
	if !c.separate {
		_ = exec.Command("ip", "route", "del", c.PodCIDR, "via", c.Node.NSIP).Run() //nolint:gosec // the harness's addresses
		if c.LoadBalancerPool.IsValid() {
			_ = exec.Command("ip", "route", "del", c.LoadBalancerPool.String(), "via", c.Node.NSIP).Run() //nolint:gosec // the harness's addresses
		}
	}
	removeLogLinks(c.Dir)
	_ = os.Remove(c.recordPath())
}

// WaitPodsReady waits for n pods matching selector in namespace to be
// Ready and returns them.
func (c *Cluster) WaitPodsReady(t testing.TB, namespace, selector string, n int) []corev1.Pod {
	t.Helper()
	pods, err := c.podsReady(namespace, selector, n, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

func (c *Cluster) podsReady(namespace, selector string, n int, timeout time.Duration) ([]corev1.Pod, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		list, err := c.Client.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			var ready []corev1.Pod
			var states []string
			for _, p := range list.Items {
				ok := false
				for _, cond := range p.Status.Conditions {
					ok = ok || cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue
				}
				if ok && p.DeletionTimestamp == nil {
					ready = append(ready, p)
				}
				states = append(states, fmt.Sprintf("%s %s %s", p.Name, p.Status.Phase, p.Status.Message))
				for _, cs := range p.Status.ContainerStatuses {
					if w := cs.State.Waiting; w != nil {
						states = append(states, cs.Name+" waiting: "+w.Reason+" "+w.Message)
					}
				}
			}
			if len(ready) >= n {
				return ready, nil
			}
			last = strings.Join(states, "; ")
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: %d pods %s in %s not Ready after %v: %s (logs in %s)", c.Name, n, selector, namespace, timeout, last, c.Dir)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Flat joins the clusters' nodes into one pod network: a link between
// every two nodes, each routing the other's pod CIDR through it (pods
// reach each other's pods by IP, as in a flat ClusterSet). Nothing goes
// through the test's namespace.
func Flat(t testing.TB, clusters ...*Cluster) {
	t.Helper()
	for i, a := range clusters {
		for _, b := range clusters[i+1:] {
			mine, _ := a.Node.Link(t, b.Node, b.PodCIDR)
			b.Node.Route(t, a.PodCIDR, mine)
		}
	}
}
