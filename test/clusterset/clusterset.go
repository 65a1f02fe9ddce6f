package clusterset

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/testkit"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eastwest-dev/eastwest/test/cluster"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// The ClusterSet's facts, as the guides name them.
const (
	// Name is the ClusterSet's name (clusterSet in the guide's values).
	Name = "prod"
	// Namespace is eastwest's namespace in every cluster.
	Namespace = "eastwest-system"
	// Apps is the demo's namespace.
	Apps = "shop"
	// TrustDomain of every identity (the chart's default).
	TrustDomain = "eastwest.io"
)

// The clusters: own runs the control plane and, with east, is on
// network one (a flat pod network); west is on network two. All three
// are members, and each has east-west gateways (docs/networks.md).
var (
	names    = []string{"own", "east", "west"}
	networks = []string{"one", "one", "two"}
)

// ClusterSet is three real clusters with eastwest installed by running
// the guides (Guides) as written: without cert-manager, each member's
// certificates from a CA of its own made with openssl, one release per
// cluster, the control plane exposed by a LoadBalancer Service (the
// harness's load balancer gives it own's WAN address), the demo's cart
// exported from east and west.
type ClusterSet struct {
	Own, East, West *cluster.Cluster
	All             []*cluster.Cluster
	// Dir holds the operator's folder (the guides' files: keys,
	// certificates, clusterset.yaml; the kubeconfig), and guide.log.
	Dir string
	// Image is the project's image the control plane runs.
	Image string
	// XDS is the xds command, built for this machine.
	XDS string
}

// Up starts the clusters, puts in them what the guides take as given
// (the images, as a registry would serve them; the demo's namespace, its
// cart service in east and west, a client pod in each cluster) and runs
// the guides' blocks, as written and in order: certificates, the control
// plane, the members and their remote secrets, CoreDNS, cart exported,
// the networks and the gateways.
func Up(t testing.TB) *ClusterSet {
	t.Helper()
	start := time.Now()
	image, archive := cluster.ProjectImage(t)
	helmBin := helm(t)
	debian := cluster.DebianImages(t)
	appVersion := chartAppVersion(t)
	all := cluster.StartWith(t, cluster.Options{Networks: networks}, names...)
	cs := &ClusterSet{Own: all[0], East: all[1], West: all[2], All: all, Dir: t.TempDir(), Image: image}
	t.Logf("three clusters up in %v", time.Since(start).Round(time.Second))
	cs.XDS = buildXDS(t, cs.Dir)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	// Every cluster: the images (the project's also under the chart's
	// default name, as the release's registry serves it), the Gateway API
	// CRDs (the guide applies them from the internet), the demo.
	gatewayCRDs, err := kube.GatewayCRDs()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, c := range all {
		wg.Go(func() {
			errs[i] = func() error {
				for _, a := range []string{archive, debian} {
					if err := c.Import(a); err != nil {
						return err
					}
				}
				if err := c.Tag(image, "docker.io/eastwest/xds:"+appVersion); err != nil {
					return err
				}
				if err := c.InstallCRDs(ctx, gatewayCRDs...); err != nil {
					return err
				}
				if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Apps}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
					return err
				}
				apps := client
				if c.Name != "own" {
					apps += "---\n" + cart
				}
				return c.Apply(ctx, []byte(apps))
			}()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	cs.runGuides(ctx, t, helmBin)
	for _, c := range all {
		for ns, deploys := range map[string][]string{Namespace: {"eastwest-gateway"}, Apps: {"client"}} {
			if c == cs.Own && ns == Namespace {
				deploys = append(deploys, "eastwest")
			}
			if c != cs.Own && ns == Apps {
				deploys = append(deploys, "cart")
			}
			for _, d := range deploys {
				if err := c.WaitRolledOut(ctx, ns, d); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Logf("the ClusterSet is up %v after start", time.Since(start).Round(time.Second))
	return cs
}

// chartAppVersion is the chart's appVersion: the tag of the image it
// runs by default.
func chartAppVersion(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testkit.RepoRoot(), "deploy", "helm", "eastwest", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no appVersion in the chart's Chart.yaml")
	}
	return string(m[1])
}

// cart is the demo's service: two echo pods answering with their names
// (exported by the install guide's step 5).
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

// helm is the Helm binary make helm builds.
func helm(t testing.TB) string {
	t.Helper()
	p := filepath.Join(testkit.RepoRoot(), ".cache", "bin", "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no helm at %s: run `make helm`", p)
	}
	return p
}

// buildXDS builds the xds command (for create-remote-secret) into dir.
func buildXDS(t testing.TB, dir string) string {
	t.Helper()
	bin, err := cluster.Static(dir, testkit.RepoRoot(), "github.com/eastwest-dev/eastwest/cmd/xds", "xds")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// diagnose logs what a failed test needs to say why: every replica's xDS
// clients (a NACK with its reason), the members as the control plane sees
// them, the EndpointSlices of the demo's namespace in every cluster, and
// the end of every gateway's and control-plane pod's log (for the
// gateways, Envoy's warnings and errors only).
func (cs *ClusterSet) diagnose(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, cmd := range []string{"status", "members"} {
		out, err := exec.CommandContext(ctx, cs.XDS, cmd, "--kubeconfig", cs.Own.Kubeconfig, "--namespace", Namespace).CombinedOutput() //nolint:gosec // the xds this test built
		t.Logf("diagnose: xds %s --kubeconfig (%v):\n%s", cmd, err, out)
	}
	for _, c := range cs.All {
		var b strings.Builder
		list, err := c.Client.DiscoveryV1().EndpointSlices(Apps).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Logf("diagnose: %s: EndpointSlices: %v", c.Name, err)
		} else {
			for _, s := range list.Items {
				fmt.Fprintf(&b, "  %s (service %s, managed by %s):", s.Name, s.Labels["kubernetes.io/service-name"], s.Labels["endpointslice.kubernetes.io/managed-by"])
				for _, p := range s.Ports {
					if p.Port != nil {
						fmt.Fprintf(&b, " port %d", *p.Port)
					}
				}
				for _, e := range s.Endpoints {
					fmt.Fprintf(&b, " %v ready=%v", e.Addresses, e.Conditions.Ready != nil && *e.Conditions.Ready)
				}
				b.WriteString("\n")
			}
			t.Logf("diagnose: %s: EndpointSlices in %s:\n%s", c.Name, Apps, b.String())
		}
		for _, sel := range []string{"app=eastwest-gateway", "app=eastwest"} {
			pods, err := c.Client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				t.Logf("diagnose: %s: pods %s: %v", c.Name, sel, err)
				continue
			}
			for _, p := range pods.Items {
				log, err := c.Logs(ctx, Namespace, p.Name)
				lines := strings.Split(strings.TrimSpace(log), "\n")
				if sel == "app=eastwest-gateway" {
					lines = slicesFilter(lines, func(l string) bool {
						return strings.Contains(l, "[warning]") || strings.Contains(l, "[error]") || strings.Contains(l, "[critical]")
					})
				}
				t.Logf("diagnose: %s: %s (%s, %v) log ends (%v):\n%s", c.Name, p.Name, p.Status.PodIP, p.Status.Phase, err, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	}
}

func slicesFilter(in []string, keep func(string) bool) []string {
	var out []string
	for _, s := range in {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}
