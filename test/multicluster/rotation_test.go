package multicluster

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// A member's credentials rotate: eastwest is given a new token of its
// ServiceAccount, the old token is revoked, and every reader and writer of
// the member moves to the new one. The write-back keeps writing into the
// member: no failed write-back pass after the rotation, and the member's
// imports follow the exporter's changes. (Before the member's connection
// was one thing, the write-back kept the clients it made first, with the
// revoked token, and failed every pass from then on.)
func TestCredentialRotation(t *testing.T) {
	cs := kube.Start(t, "home", "remote")
	home, remote := &member{Cluster: cs[0], mcs: mustMCS(t, cs[0])}, &member{Cluster: cs[1], mcs: mustMCS(t, cs[1])}
	apply(t, remote.Cluster, "../../deploy/kubernetes/member-rbac.yaml")
	dir := kubeconfigDir(t, home.Cluster)
	file := filepath.Join(dir, "remote.yaml")
	oldToken := boundToken(t, remote.Cluster, "token-1")
	writeFile(t, file, serviceAccountKubeconfig(t, remote.Cluster, oldToken))
	app := cptest.StartWith(t, controlplane.Config{KubeconfigDir: dir, WriteBack: true, Resync: time.Minute})

	const ns = "rot"
	home.namespace(t, ns)
	remote.namespace(t, ns)
	home.service(t, clusterIPService(ns, "api"))
	home.slice(t, ns, "api", true, "10.1.0.1")
	home.export(t, ns, "api")
	remote.importIs(t, ns, "api", nil)
	remote.mcsSliceHas(t, ns, "api", "10.1.0.1")

	// Rotate: the new token first, then the old one revoked once the
	// member reconnected with it.
	writeFile(t, file, serviceAccountKubeconfig(t, remote.Cluster, boundToken(t, remote.Cluster, "token-2")))
	testkit.Eventually(t, "remote reconnected with its new credentials", func() error {
		for _, s := range app.MemberStatuses() {
			if s.Member == "remote" && s.Generation == 2 && s.State == "synced" {
				return nil
			}
		}
		return fmt.Errorf("%+v", app.MemberStatuses())
	})
	revoke(t, remote.Cluster, "token-1", oldToken)
	failed := memberFailures(t, app, "remote")

	// The write-back writes with the new token: a changed endpoint and a
	// new export reach the member.
	home.slice(t, ns, "api", true, "10.1.0.2")
	home.service(t, clusterIPService(ns, "web"))
	home.slice(t, ns, "web", true, "10.1.0.3")
	home.export(t, ns, "web")
	remote.mcsSliceHas(t, ns, "api", "10.1.0.2")
	remote.importIs(t, ns, "web", nil)
	remote.mcsSliceHas(t, ns, "web", "10.1.0.3")
	if n := memberFailures(t, app, "remote"); n != failed {
		t.Errorf("%v write-back passes failed in remote after the rotation (%+v)", n-failed, app.WriteBack().Retrying)
	}
	if wb := app.WriteBack(); len(wb.Retrying) > 0 {
		t.Errorf("the write-back backs off from %+v", wb.Retrying)
	}
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	// Written aside and renamed, as a mounted Secret changes: the
	// registry never reads half a file.
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// boundToken returns a token of the member's eastwest ServiceAccount bound
// to a new Secret named secret: deleting the Secret revokes the token.
func boundToken(t testing.TB, c *kube.Cluster, secret string) string {
	t.Helper()
	s, err := c.Client.CoreV1().Secrets("eastwest-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secret}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := c.Client.CoreV1().ServiceAccounts("eastwest-system").CreateToken(ctx, "eastwest", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr(int64(3600)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Secret", Name: s.Name, UID: s.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// revoke deletes the Secret a token is bound to and waits until the
// apiserver refuses the token.
func revoke(t testing.TB, c *kube.Cluster, secret, token string) {
	t.Helper()
	if err := c.Client.CoreV1().Secrets("eastwest-system").Delete(ctx, secret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = token
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the old token refused", func() error {
		_, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: 1})
		if apierrors.IsUnauthorized(err) {
			return nil
		}
		return fmt.Errorf("the old token still answers: %w", err)
	})
}

// serviceAccountKubeconfig is the member's kubeconfig with the admin's
// credentials replaced by token.
func serviceAccountKubeconfig(t testing.TB, c *kube.Cluster, token string) []byte {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for name := range cfg.AuthInfos {
		cfg.AuthInfos[name].Token, cfg.AuthInfos[name].TokenFile = token, ""
		cfg.AuthInfos[name].ClientCertificate, cfg.AuthInfos[name].ClientCertificateData = "", nil
		cfg.AuthInfos[name].ClientKey, cfg.AuthInfos[name].ClientKeyData = "", nil
	}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mcsSliceHas waits until the member's MCS EndpointSlices of a service
// hold ip.
func (m *member) mcsSliceHas(t testing.TB, ns, svc, ip string) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("%s: MCS slice of %s/%s holds %s", m.Name, ns, svc, ip), func() error {
		list, err := m.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelManagedBy + "=" + mcs.ControllerName + "," + mcsv1b1.LabelServiceName + "=" + svc})
		if err != nil {
			return err
		}
		var have []string
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				have = append(have, e.Addresses...)
			}
		}
		if !slices.Contains(have, ip) {
			return fmt.Errorf("addresses %v", have)
		}
		return nil
	})
}

// memberFailures is the write-back's failed passes in a member so far.
func memberFailures(t testing.TB, app *controlplane.App, name string) float64 {
	t.Helper()
	for _, m := range series(t, app, "eastwest_writeback_member_failures_total") {
		if m.labels["member"] == name {
			return m.value
		}
	}
	return 0
}

// seriesValue is one series of a metric.
type seriesValue struct {
	labels map[string]string
	value  float64
}

// series are the series of one of the control plane's metrics.
func series(t testing.TB, app *controlplane.App, name string) []seriesValue {
	t.Helper()
	families, err := app.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []seriesValue
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sv := seriesValue{labels: map[string]string{}, value: m.GetCounter().GetValue() + m.GetGauge().GetValue()}
			for _, l := range m.GetLabel() {
				sv.labels[l.GetName()] = l.GetValue()
			}
			out = append(out, sv)
		}
	}
	return out
}
