package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"

	"github.com/eastwest-dev/eastwest/deploy/crds"
	"github.com/eastwest-dev/eastwest/internal/testkit"
)

// Cluster is one running member cluster.
type Cluster struct {
	Name string
	// Dir holds the cluster's data, certificates and logs.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig.
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	Dynamic    dynamic.Interface

	bin string
	// addr is the cluster's own loopback address (testkit.LoopbackAddr), where
	// etcd and kube-apiserver listen on their usual ports.
	addr    string
	etcdURL string
	token   string

	mu        sync.Mutex
	etcd      *Process
	apiserver *Process
}

// Process is a command the harness started, and its end.
type Process struct {
	cmd  *exec.Cmd
	done chan error
}

func start(name, dir string, args ...string) (*Process, error) {
	return Run(dir, filepath.Base(name), name, args...)
}

// Run starts a command with its output in dir/<log>.log. It dies with
// the test binary, however that ends (Pdeathsig), and runs in a process
// group of its own.
func Run(dir, log, name string, args ...string) (*Process, error) {
	logf, err := os.Create(filepath.Join(dir, log+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...) //nolint:gosec // the harness's own binaries
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); _ = logf.Close() }()
	return p, nil
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Stop ends a process: SIGTERM, then SIGKILL after a grace period.
func (p *Process) Stop() { p.stop() }

// Kill ends a process and its process group at once (SIGKILL) and waits
// for it: for servers whose graceful shutdown a test has no use for. A
// kube-apiserver with clients watching takes more than 10 s to stop on
// SIGTERM, which every test's teardown paid.
func (p *Process) Kill() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	err := <-p.done
	p.done <- err
}

func (p *Process) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err // a stopped process exits with a signal: expected
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
	}
}

// BinDir is where the harness finds kube-apiserver and etcd.
func BinDir() string {
	if d := os.Getenv("EASTWEST_KUBE_BIN"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", ".cache", "k8s")
}

// Start starts one member cluster per name, in parallel, and stops them
// all when the test ends.
func Start(t testing.TB, names ...string) []*Cluster {
	t.Helper()
	bin := BinDir()
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("%s is not built in %s: run `make kube-bins` (test/tools/build.sh)", b, bin)
		}
	}
	out := make([]*Cluster, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		c := &Cluster{Name: name, Dir: filepath.Join(t.TempDir(), name), bin: bin}
		out[i] = c
		t.Cleanup(c.stopAll)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.boot()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start clusters: %v", err)
	}
	return out
}

// The ports etcd and kube-apiserver listen on, each cluster on a loopback
// address of its own (testkit.LoopbackAddr: a port picked free on
// 127.0.0.1 and released could be taken before the apiserver bound it).
const (
	etcdClientPort = 2379
	etcdPeerPort   = 2380
	apiserverPort  = 6443
)

func (c *Cluster) boot() error {
	if err := os.MkdirAll(filepath.Join(c.Dir, "certs"), 0o750); err != nil {
		return err
	}
	var err error
	if c.addr, err = testkit.LoopbackAddr(etcdClientPort, etcdPeerPort, apiserverPort); err != nil {
		return err
	}
	c.etcdURL = fmt.Sprintf("http://%s:%d", c.addr, etcdClientPort)
	peer := fmt.Sprintf("http://%s:%d", c.addr, etcdPeerPort)
	c.etcd, err = start(filepath.Join(c.bin, "etcd"), c.Dir, "--name", c.Name, "--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", c.etcdURL, "--advertise-client-urls", c.etcdURL,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", c.Name+"="+peer,
		"--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return err
	}
	if err := waitHTTP(c.etcdURL+"/health", nil, 30*time.Second, c.etcd); err != nil {
		return fmt.Errorf("%s: etcd: %w", c.Name, err)
	}
	if err := c.writeSecrets(); err != nil {
		return err
	}
	if err := c.StartAPIServer(); err != nil {
		return err
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	return c.installCRDs()
}

// writeSecrets makes the admin token and the service account key pair.
func (c *Cluster) writeSecrets() error {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	c.token = hex.EncodeToString(b)
	if err := os.WriteFile(filepath.Join(c.Dir, "tokens.csv"), []byte(c.token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

// StartAPIServer starts (or restarts, with the same port and data) the
// cluster's kube-apiserver and waits until it is ready.
func (c *Cluster) StartAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil {
		return errors.New("kube-apiserver already running")
	}
	p, err := start(filepath.Join(c.bin, "kube-apiserver"), c.Dir,
		"--etcd-servers", c.etcdURL,
		"--bind-address", c.addr, "--advertise-address", c.addr, "--secure-port", strconv.Itoa(apiserverPort),
		// 1.37 refuses loopback advertise addresses unless no endpoint
		// reconciler runs.
		"--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(c.Dir, "certs"),
		"--token-auth-file", filepath.Join(c.Dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-key-file", filepath.Join(c.Dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(c.Dir, "sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range", "10.96.0.0/16,fd00:10:96::/112",
		"--disable-admission-plugins", "ServiceAccount",
	)
	if err != nil {
		return err
	}
	c.apiserver = p
	ca := filepath.Join(c.Dir, "certs", "apiserver.crt")
	if err := waitHTTP(c.URL()+"/readyz", func() (*http.Client, http.Header) {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, nil
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
			http.Header{"Authorization": {"Bearer " + c.token}}
	}, 90*time.Second, p); err != nil {
		return fmt.Errorf("%s: kube-apiserver: %w (log: %s)", c.Name, err, filepath.Join(c.Dir, "kube-apiserver.log"))
	}
	return nil
}

// StopAPIServer stops the cluster's kube-apiserver at once, as an outage
// does (Kill); etcd and its data stay.
func (c *Cluster) StopAPIServer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.apiserver.Kill()
	c.apiserver = nil
}

// stopAll ends the cluster with the test: nothing of it is kept, so
// nothing needs a graceful stop.
func (c *Cluster) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.apiserver.Kill()
	c.apiserver = nil
	c.etcd.Kill()
	c.etcd = nil
}

// PIDs are the process IDs of the cluster's kube-apiserver and etcd (0
// when stopped): benchmarks read what they cost.
func (c *Cluster) PIDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, p := range []*Process{c.apiserver, c.etcd} {
		if p != nil && p.cmd.Process != nil {
			out = append(out, p.cmd.Process.Pid)
		}
	}
	return out
}

// URL is the apiserver's address.
func (c *Cluster) URL() string { return fmt.Sprintf("https://%s:%d", c.addr, apiserverPort) }

// WaitHTTP polls url until it answers 200, the process ends, or timeout;
// client, when set, gives the client and headers to poll with (nil
// client: not yet, try again).
func WaitHTTP(url string, client func() (*http.Client, http.Header), timeout time.Duration, p *Process) error {
	return waitHTTP(url, client, timeout, p)
}

// waitHTTP polls url until it answers 200, the process ends, or timeout.
func waitHTTP(url string, client func() (*http.Client, http.Header), timeout time.Duration, p *Process) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("exited: %w", err)
		default:
		}
		hc, hdr := &http.Client{Timeout: 2 * time.Second}, http.Header{}
		if client != nil {
			if hc, hdr = client(); hc == nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header = hdr
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %w", timeout, last)
}

func (c *Cluster) writeKubeconfig() error {
	ca, err := os.ReadFile(filepath.Join(c.Dir, "certs", "apiserver.crt"))
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.URL(), CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: c.token}
	cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: "admin"}
	cfg.CurrentContext = c.Name
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, c.Kubeconfig); err != nil {
		return err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return err
	}
	c.Config.QPS, c.Config.Burst = 200, 400
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	c.Dynamic, err = dynamic.NewForConfig(c.Config)
	return err
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs creates the MCS, About and Gateway API CRDs and eastwest's
// own (GatewayParameters), and waits until they are Established (a custom
// resource created sooner waits 2 s).
func (c *Cluster) installCRDs() error {
	docs := append(MCSCRDs(), crds.GatewayParametersCRD)
	gw, err := GatewayCRDs()
	if err != nil {
		return err
	}
	return c.InstallCRDs(append(docs, gw...)...)
}

// MCSCRDs are the CRDs of the MCS API (ServiceExport, ServiceImport, of
// the mcs-api module eastwest is built with) and of the About API
// (ClusterProperty).
func MCSCRDs() [][]byte {
	return [][]byte{mcscrd.ServiceExportCRD, mcscrd.ServiceImportCRD, crds.ClusterPropertyCRD}
}

// InstallCRDs creates the CustomResourceDefinitions in docs (YAML, any
// other kind skipped) and waits until they are Established.
func (c *Cluster) InstallCRDs(docs ...[]byte) error {
	return CreateCRDs(context.Background(), c.Name, c.Dynamic, c.Client.Discovery(), docs...)
}

// CreateCRDs creates the CustomResourceDefinitions in docs (YAML, any
// other kind skipped) in the cluster called cluster and waits until they
// are Established and discovery lists them.
func CreateCRDs(ctx context.Context, cluster string, dyn dynamic.Interface, disc discovery.DiscoveryInterface, docs ...[]byte) error {
	var names []string
	var discover [][2]string // group/version, plural
	for _, d := range docs {
		r := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(d), 4096)
		for {
			var u unstructured.Unstructured
			if err := r.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return err
			}
			if u.GetKind() != "CustomResourceDefinition" {
				continue
			}
			if _, err := dyn.Resource(crdGVR).Create(ctx, &u, metav1CreateOptions); err != nil {
				return fmt.Errorf("%s: create CRD %s: %w", cluster, u.GetName(), err)
			}
			names = append(names, u.GetName())
			group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
			plural, _, _ := unstructured.NestedString(u.Object, "spec", "names", "plural")
			versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
			for _, v := range versions {
				m, _ := v.(map[string]any)
				if served, _ := m["served"].(bool); served {
					name, _ := m["name"].(string)
					discover = append(discover, [2]string{group + "/" + name, plural})
				}
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range names {
		for {
			u, err := dyn.Resource(crdGVR).Get(ctx, n, metav1GetOptions)
			if err == nil && established(u) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: CRD %s not Established", cluster, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Established comes before discovery lists the new resources (the
	// apiserver updates discovery asynchronously): a client that maps
	// kinds through discovery right after could find no match, so wait
	// for every served version to be discoverable too.
	for _, d := range discover {
		for !discoverable(disc, d[0], d[1]) {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %s in %s not in discovery", cluster, d[1], d[0])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// discoverable says whether discovery lists resource in groupVersion.
func discoverable(disc discovery.DiscoveryInterface, groupVersion, resource string) bool {
	list, err := disc.ServerResourcesForGroupVersion(groupVersion)
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true
		}
	}
	return false
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

var (
	gatewayOnce sync.Once
	gatewayDocs [][]byte
	gatewayErr  error
)

// GatewayAPIVersion is the Gateway API release whose standard CRDs the
// clusters get.
const GatewayAPIVersion = "v1.6.3"

// GatewayCRDs reads the Gateway API standard-channel CRDs of
// GatewayAPIVersion from the module cache (downloading the module from the
// proxy when needed).
func GatewayCRDs() ([][]byte, error) {
	gatewayOnce.Do(func() {
		out, err := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/gateway-api@"+GatewayAPIVersion).Output()
		if err != nil {
			gatewayErr = fmt.Errorf("download sigs.k8s.io/gateway-api: %w", err)
			return
		}
		var mod struct{ Dir string }
		if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
			gatewayErr = fmt.Errorf("locate sigs.k8s.io/gateway-api: %w", err)
			return
		}
		files, err := filepath.Glob(filepath.Join(mod.Dir, "config", "crd", "standard", "*.yaml"))
		if err != nil {
			gatewayErr = err
			return
		}
		if len(files) == 0 {
			gatewayErr = fmt.Errorf("no Gateway API CRDs in %s", mod.Dir)
			return
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				gatewayErr = err
				return
			}
			gatewayDocs = append(gatewayDocs, b)
		}
	})
	return gatewayDocs, gatewayErr
}

// ClusterProfileCRDs reads the ClusterProfile CRD (KEP-4322) of the
// sigs.k8s.io/cluster-inventory-api release eastwest's go.mod requires,
// from the module cache.
func ClusterProfileCRDs() ([][]byte, error) {
	out, err := exec.Command("go", "list", "-m", "-json", "sigs.k8s.io/cluster-inventory-api").Output()
	if err != nil {
		return nil, fmt.Errorf("locate sigs.k8s.io/cluster-inventory-api: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return nil, fmt.Errorf("locate sigs.k8s.io/cluster-inventory-api: %w (run go mod download)", err)
	}
	b, err := os.ReadFile(filepath.Join(mod.Dir, "config", "crd", "bases", "multicluster.x-k8s.io_clusterprofiles.yaml"))
	if err != nil {
		return nil, err
	}
	return [][]byte{b}, nil
}

var (
	metav1CreateOptions = metav1.CreateOptions{}
	metav1GetOptions    = metav1.GetOptions{}
)
