package clusterset

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/test/cluster"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

// The ClusterSet's facts.
const (
	// Name is the ClusterSet's name (clusterSet in the chart).
	Name = "demo"
	// Namespace is eastwest's namespace in every cluster.
	Namespace = "eastwest-system"
	// Apps is the demo's namespace.
	Apps = "shop"
	// TrustDomain of every identity (the chart's default).
	TrustDomain = "eastwest.io"
)

// The clusters: own runs the control plane and, with east, is on
// network one (a flat pod network); west is on network two. All three
// are members, and each has east-west gateways.
var (
	names    = []string{"own", "east", "west"}
	networks = []string{"one", "one", "two"}
)

// ClusterSet is three real clusters with eastwest installed from the
// chart as docs/install.md says (without cert-manager: the certificates
// are made here, each member's by a CA of its own, as the chart's
// certManager.enabled=false documents), the demo service exported.
type ClusterSet struct {
	Own, East, West *cluster.Cluster
	All             []*cluster.Cluster
	// Dir holds the helm state, certificates and kubeconfigs.
	Dir string
	// Image is the project's image the control plane runs.
	Image string
	// XDS is the xds command, built for this machine.
	XDS string

	cas map[string]*cptest.CA
}

// Up starts the clusters and installs eastwest and the demo: the
// control plane (2 replicas, leader election, mutual TLS, one trust
// anchor per member), every member's RBAC and remote secret, the
// gateways, CoreDNS's clusterset.local (deploy/coredns), the demo's
// cart service in east and west, exported.
func Up(t testing.TB) *ClusterSet {
	t.Helper()
	start := time.Now()
	image, archive := cluster.ProjectImage(t)
	helmBin := helm(t)
	debian := cluster.DebianImages(t)
	all := cluster.StartWith(t, cluster.Options{Networks: networks}, names...)
	cs := &ClusterSet{Own: all[0], East: all[1], West: all[2], All: all, Dir: t.TempDir(), Image: image, cas: map[string]*cptest.CA{}}
	t.Logf("three clusters up in %v", time.Since(start).Round(time.Second))
	xds := buildXDS(t, cs.Dir)
	cs.XDS = xds
	corefile, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "coredns", "coredns.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Every cluster: the images, its CA (a member's own issuer), its
	// namespaces.
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, c := range all {
		cs.cas[c.Name] = cptest.NewCA(t)
		wg.Go(func() {
			errs[i] = func() error {
				for _, a := range []string{archive, debian} {
					if err := c.Import(a); err != nil {
						return err
					}
				}
				for _, ns := range []string{Namespace, Apps} {
					if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
						return err
					}
				}
				return nil
			}()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	i := strings.LastIndex(image, ":")
	repo, tag := image[:i], image[i+1:]

	// Step 1 of docs/install.md, without cert-manager: the Secrets its
	// Certificates would make, each member's from its own CA; the trust
	// anchors (each member's CA certificate) beside the control plane;
	// the control plane's CA certificate in every member, for its Envoys.
	ownCA := cs.cas["own"]
	anchors := map[string]string{}
	for _, c := range all {
		anchors[c.Name+".pem"] = pemOf(t, cs.cas[c.Name].File)
	}
	cpCert := ownCA.Kubernetes(t, "eastwest", nil, []string{cs.Own.WAN},
		[]string{"eastwest." + Namespace + ".svc", "eastwest." + Namespace + ".svc.cluster.local"})
	cs.tlsSecret(ctx, t, cs.Own, "eastwest-xds-tls", ownCA, cpCert)
	cs.configMap(ctx, t, cs.Own, "eastwest-trust-anchors", anchors)
	for _, c := range all {
		cs.configMap(ctx, t, c, "eastwest-control-plane-ca", map[string]string{"ca.crt": pemOf(t, ownCA.File)})
		gw := cs.cas[c.Name].Gateway(t, identity(c.Name, "gateway"))
		cs.tlsSecret(ctx, t, c, "eastwest-tunnel", cs.cas[c.Name], gw)
	}

	// Steps 2, 3 and 6: one release per cluster (the control plane's
	// cluster is a member too: one release with both parts, so the
	// ServiceAccount eastwest is made once), members' remote secrets.
	common := []string{
		"--set", "certManager.enabled=false", "--set", "clusterSet=" + Name,
		"--set", "member.enabled=true",
		"--set", "gateway.enabled=true", "--set", "gateway.replicas=2",
		"--set", "gateway.image.repository=" + strings.TrimSuffix(cluster.EnvoyImage, ":"+envoytest.Version), "--set", "gateway.image.tag=" + envoytest.Version,
		"--set", "gateway.xdsAddress=" + cs.Own.WAN + ":18000",
		"--set", "gateway.service.type=ClusterIP",
		"--set", "gateway.resources.requests.cpu=100m", "--set", "gateway.resources.requests.memory=64Mi",
		"--set", "controlPlaneCA.configMap=eastwest-control-plane-ca",
	}
	for _, c := range all {
		args := append([]string{"install", "eastwest", filepath.Join(repoRoot(), "deploy", "helm", "eastwest"),
			"--kubeconfig", c.Kubeconfig, "--namespace", Namespace,
			"--set", "gateway.clusterID=" + c.Name, "--set", "gateway.service.externalIPs={" + c.WAN + "}"}, common...)
		if c == cs.Own {
			args = append(args,
				"--set", "controlPlane.image.repository="+repo, "--set", "controlPlane.image.tag="+tag,
				"--set", "controlPlane.trustAnchors.configMap=eastwest-trust-anchors",
				"--set", "controlPlane.xds.service.externalIPs={"+cs.Own.WAN+"}",
				"--set", "controlPlane.xds.extraIPAddresses={"+cs.Own.WAN+"}",
				"--set", "controlPlane.resources.requests.cpu=100m")
		} else {
			args = append(args, "--set", "controlPlane.enabled=false")
		}
		run(t, cs.Dir, helmBin, args...)
		// Its name and network (the chart installed the About API's CRD).
		if err := c.Apply(ctx, []byte(properties(c.Name, c.Network))); err != nil {
			t.Fatal(err)
		}
	}
	// Step 5: CoreDNS answers clusterset.local (it reads ServiceImports:
	// after the chart's CRDs).
	for i, c := range all {
		wg.Go(func() { errs[i] = c.ConfigureDNS(ctx, corefile) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Run where the control plane runs (own's node, on the WAN): the
	// secret names the server as the control plane reaches it.
	for _, c := range all {
		secret := run(t, cs.Dir, "ip", "netns", "exec", cs.Own.Node.Name, xds, "create-remote-secret", "--kubeconfig", c.WANKubeconfig, "--name", c.Name)
		if err := cs.Own.Apply(ctx, []byte(secret)); err != nil {
			t.Fatalf("remote secret of %s: %v", c.Name, err)
		}
	}
	for _, c := range all {
		if c == cs.Own {
			if err := c.WaitRolledOut(ctx, Namespace, "eastwest"); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.WaitRolledOut(ctx, Namespace, "eastwest-gateway"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("eastwest installed %v after start", time.Since(start).Round(time.Second))

	// Step 4: the demo's cart in east and west, exported.
	for _, c := range []*cluster.Cluster{cs.East, cs.West} {
		if err := c.Apply(ctx, []byte(cart)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range all {
		if err := c.Apply(ctx, []byte(client)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range all {
		for _, d := range []string{"client"} {
			if err := c.WaitRolledOut(ctx, Apps, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []*cluster.Cluster{cs.East, cs.West} {
		if err := c.WaitRolledOut(ctx, Apps, "cart"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("the ClusterSet is up %v after start", time.Since(start).Round(time.Second))
	return cs
}

// identity is a member's identity for a role (the chart's
// eastwest.identity).
func identity(member, role string) string {
	return fmt.Sprintf("spiffe://%s/clusterset/%s/cluster/%s/role/%s", TrustDomain, Name, member, role)
}

// properties are a member's About API properties: its cluster ID, the
// ClusterSet, its network.
func properties(id, network string) string {
	var b strings.Builder
	for _, p := range [][2]string{{"cluster.clusterset.k8s.io", id}, {"clusterset.k8s.io", Name}, {"network.eastwest.io", network}} {
		fmt.Fprintf(&b, "apiVersion: about.k8s.io/v1alpha1\nkind: ClusterProperty\nmetadata: {name: %s}\nspec: {value: %s}\n---\n", p[0], p[1])
	}
	return b.String()
}

// cart is the demo's service: two echo pods answering with their names.
var cart = fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec:
      containers:
      - name: echo
        image: %[2]s
        imagePullPolicy: Never
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: %[1]s}
spec:
  selector: {app: cart}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {name: cart, namespace: %[1]s}
`, Apps, cluster.EchoImage)

// client is a pod to call from (curl, nslookup): the Debian test image.
var client = fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: client
        image: %[2]s
        imagePullPolicy: Never
        command: [sleep, infinity]
`, Apps, cluster.NetshootImage)

func (cs *ClusterSet) tlsSecret(ctx context.Context, t testing.TB, c *cluster.Cluster, name string, ca *cptest.CA, leaf cptest.Leaf) {
	t.Helper()
	cert, key := leaf.PEM(t)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace}, Type: corev1.SecretTypeTLS,
		StringData: map[string]string{"tls.crt": cert, "tls.key": key, "ca.crt": pemOf(t, ca.File)}}
	if _, err := c.Client.CoreV1().Secrets(Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: Secret %s: %v", c.Name, name, err)
	}
}

func (cs *ClusterSet) configMap(ctx context.Context, t testing.TB, c *cluster.Cluster, name string, data map[string]string) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace}, Data: data}
	if _, err := c.Client.CoreV1().ConfigMaps(Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: ConfigMap %s: %v", c.Name, name, err)
	}
}

func pemOf(t testing.TB, file string) string {
	t.Helper()
	b, err := os.ReadFile(file) //nolint:gosec // the test's CA
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// run runs a command in dir and returns its standard output.
func run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...) //nolint:gosec // the test's own commands
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+dir, "HELM_CONFIG_HOME="+dir, "HELM_DATA_HOME="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// helm is the Helm binary make helm builds.
func helm(t testing.TB) string {
	t.Helper()
	p := filepath.Join(repoRoot(), ".cache", "bin", "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no helm at %s: run `make helm`", p)
	}
	return p
}

// buildXDS builds the xds command (for create-remote-secret) into dir.
func buildXDS(t testing.TB, dir string) string {
	t.Helper()
	bin, err := cluster.Static(dir, repoRoot(), "github.com/eastwest-dev/eastwest/cmd/xds", "xds")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
