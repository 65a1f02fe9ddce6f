package multicluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// member is one member cluster with its clients.
type member struct {
	*kube.Cluster
	mcs mcsclient.Interface
}

// clusterSet is three real member clusters served by one control plane.
type clusterSet struct {
	t       *testing.T
	members []*member
	app     *controlplane.App
	kubeDir string
}

func startClusterSet(t *testing.T) *clusterSet {
	t.Helper()
	cs := &clusterSet{t: t, kubeDir: t.TempDir()}
	for _, c := range kube.Start(t, "a", "b", "c") {
		mc, err := mcsclient.NewForConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		cs.members = append(cs.members, &member{Cluster: c, mcs: mc})
		cs.join(c)
	}
	cs.app = cptest.StartWith(t, controlplane.Config{KubeconfigDir: cs.kubeDir, WriteBack: true, Resync: 10 * time.Second})
	return cs
}

// writtenBack waits until the control plane's write-back has nothing
// pending: every published change has been written to the members.
func (cs *clusterSet) writtenBack(t *testing.T) {
	t.Helper()
	testkit.Eventually(t, "write-back done", func() error {
		if n := metricValue(t, cs.app, "eastwest_writeback_pending_services"); n != 0 {
			return fmt.Errorf("%v services pending", n)
		}
		return nil
	})
}

// twoPasses waits for two write-back passes after now and returns the
// writes they made: a pass that starts after a change has seen it, so a
// converged write-back makes none.
func twoPasses(t *testing.T, app *controlplane.App) int64 {
	t.Helper()
	before := app.WriteBack()
	testkit.Eventually(t, "two more write-back passes", func() error {
		if now := app.WriteBack(); now.Passes < before.Passes+2 {
			return fmt.Errorf("%d passes since", now.Passes-before.Passes)
		}
		return nil
	})
	return app.WriteBack().Writes - before.Writes
}

// join adds a cluster to the ClusterSet by writing its kubeconfig file.
func (cs *clusterSet) join(c *kube.Cluster) {
	cs.t.Helper()
	b, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		cs.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cs.kubeDir, c.Name+".yaml"), b, 0o600); err != nil {
		cs.t.Fatal(err)
	}
}

// kubeconfigDir writes the clusters' kubeconfigs into a new folder, one
// file per member named after it, as --kubeconfig-dir reads them.
func kubeconfigDir(t testing.TB, clusters ...*kube.Cluster) string {
	t.Helper()
	dir := t.TempDir()
	for _, c := range clusters {
		b, err := os.ReadFile(c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, c.Name+".yaml"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var ctx = context.Background()

func (m *member) namespace(t testing.TB, ns string) {
	t.Helper()
	_, err := m.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// impersonate returns a client that acts as user, bound to clusterRoles
// in namespace ns: the apiserver's own RBAC decides what it may do (the
// harness's token file knows the admin alone; the admin may impersonate).
func (m *member) impersonate(t testing.TB, user, ns string, clusterRoles ...string) kubernetes.Interface {
	t.Helper()
	for _, role := range clusterRoles {
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-" + strings.ReplaceAll(role, ":", "-")},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}
		if _, err := m.Client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(m.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tunnelSecret gives the member's east-west gateways (in eastwest-system)
// a tunnel certificate of a new CA, for the gateway identity of cluster
// id.
func (m *member) tunnelSecret(t testing.TB, id string) {
	t.Helper()
	ca := cptest.NewCA(t)
	cert, key := ca.Gateway(t, controlplane.IdentityPolicy{}.IdentityURI("demo", translate.View{Cluster: mcs.ClusterID(id), Role: translate.RoleGateway})).PEM(t)
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	m.namespace(t, "eastwest-system")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "eastwest-system", Name: mcs.DefaultTunnelSecret}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte(cert), corev1.TLSPrivateKeyKey: []byte(key), "ca.crt": caPEM}}
	if _, err := m.Client.CoreV1().Secrets("eastwest-system").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (m *member) service(t testing.TB, svc *corev1.Service) {
	t.Helper()
	m.namespace(t, svc.Namespace)
	if _, err := m.Client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: create Service: %v", m.Name, err)
	}
}

func (m *member) export(t testing.TB, ns, name string, mutate ...func(*mcsv1b1.ServiceExport)) {
	t.Helper()
	se := &mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, f := range mutate {
		f(se)
	}
	if _, err := m.mcs.MulticlusterV1beta1().ServiceExports(ns).Create(ctx, se, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: create ServiceExport: %v", m.Name, err)
	}
}

func (m *member) unexport(t testing.TB, ns, name string) {
	t.Helper()
	if err := m.mcs.MulticlusterV1beta1().ServiceExports(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// slice writes an EndpointSlice of a Service (no controller manager runs
// in the test clusters, so tests write them as the EndpointSlice
// controller would).
func (m *member) slice(t testing.TB, ns, svc string, ready bool, ips ...string) {
	t.Helper()
	readiness := make([]bool, len(ips))
	for i := range readiness {
		readiness[i] = ready
	}
	m.podSlice(t, ns, svc, ips, readiness)
}

func (m *member) getImport(ns, name string) (*mcsv1b1.ServiceImport, error) {
	return m.mcs.MulticlusterV1beta1().ServiceImports(ns).Get(ctx, name, metav1.GetOptions{})
}

// importIs waits until the member's import passes check.
func (m *member) importIs(t testing.TB, ns, name string, check func(*mcsv1b1.ServiceImport) error) *mcsv1b1.ServiceImport {
	t.Helper()
	var si *mcsv1b1.ServiceImport
	testkit.Eventually(t, fmt.Sprintf("%s: ServiceImport %s/%s", m.Name, ns, name), func() error {
		var err error
		if si, err = m.getImport(ns, name); err != nil {
			return err
		}
		if check != nil {
			return check(si)
		}
		return nil
	})
	return si
}

// noImport waits until the member holds no import of the service.
func (m *member) noImport(t testing.TB, ns, name string) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("%s: no ServiceImport %s/%s", m.Name, ns, name), func() error {
		_, err := m.getImport(ns, name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			return fmt.Errorf("still exists")
		}
		return err
	})
}

// condition waits until the member's export has the condition; reason
// lists (comma-separated) reasons the condition's must include.
func (m *member) condition(t testing.TB, ns, name, typ string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("%s: ServiceExport %s/%s %s=%s/%s", m.Name, ns, name, typ, status, reason), func() error {
		se, err := m.mcs.MulticlusterV1beta1().ServiceExports(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range se.Status.Conditions {
			if c.Type == typ {
				if c.Status == status && hasReasons(c.Reason, reason) {
					return nil
				}
				return fmt.Errorf("is %s/%s: %s", c.Status, c.Reason, c.Message)
			}
		}
		return fmt.Errorf("no %s condition in %+v", typ, se.Status.Conditions)
	})
}

func hasReasons(have, want string) bool {
	if want == "" {
		return true
	}
	got := strings.Split(have, ",")
	for _, r := range strings.Split(want, ",") {
		if !slices.Contains(got, r) {
			return false
		}
	}
	return true
}

func clusterIPService(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	if len(ports) == 0 {
		ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
	}
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"svc-label": "not-exported"}},
		Spec: corev1.ServiceSpec{Ports: ports}}
}

func portsOf(si *mcsv1b1.ServiceImport) []string {
	var out []string
	for _, p := range si.Spec.Ports {
		out = append(out, fmt.Sprintf("%s/%s/%d", p.Name, p.Protocol, p.Port))
	}
	slices.Sort(out)
	return out
}

func ptr[T any](v T) *T { return &v }
