package multicluster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	cpv1a1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	cpclient "sigs.k8s.io/cluster-inventory-api/client/clientset/versioned"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// inventory is a hub cluster holding the fleet's ClusterProfiles, and the
// secretreader plugin's Secrets (one token per member, named after the
// member's cluster).
type inventory struct {
	hub      *kube.Cluster
	cp       cpclient.Interface
	ns       string
	provider string // the provider file
}

const inventoryNS = "inventory"

// pluginBin is a credential plugin of sigs.k8s.io/cluster-inventory-api,
// built by `make cluster-plugins` into .cache/bin.
func pluginBin(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", ".cache", "bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no %s at %s: run `make cluster-plugins`", name, p)
	}
	return p
}

func startInventory(t *testing.T, hub *kube.Cluster) *inventory {
	t.Helper()
	crds, err := kube.ClusterProfileCRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := hub.InstallCRDs(crds...); err != nil {
		t.Fatal(err)
	}
	(&member{Cluster: hub}).namespace(t, inventoryNS)
	cp, err := cpclient.NewForConfig(hub.Config)
	if err != nil {
		t.Fatal(err)
	}
	// The plugin reads the hub with this kubeconfig: the namespace of its
	// context is where it reads the tokens.
	cfg, err := clientcmd.LoadFromFile(hub.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Contexts[cfg.CurrentContext].Namespace = inventoryNS
	pluginKubeconfig := filepath.Join(t.TempDir(), "hub.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, pluginKubeconfig); err != nil {
		t.Fatal(err)
	}
	env := []any{map[string]any{"name": "KUBECONFIG", "value": pluginKubeconfig}}
	providers := map[string]any{"providers": []any{
		map[string]any{"name": "secretreader", "execConfig": map[string]any{
			"apiVersion": "client.authentication.k8s.io/v1", "command": pluginBin(t, "secretreader-plugin"), "provideClusterInfo": true, "env": env}},
		map[string]any{"name": "kubeconfig-secretreader", "execConfig": map[string]any{
			"apiVersion": "client.authentication.k8s.io/v1", "command": pluginBin(t, "kubeconfig-secretreader-plugin"), "provideClusterInfo": true, "env": env}},
	}}
	b, err := json.Marshal(providers)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return &inventory{hub: hub, cp: cp, ns: inventoryNS, provider: file}
}

// token stores a member's token where the secretreader plugin reads it.
func (inv *inventory) token(t testing.TB, clusterName, token string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: inv.ns, Name: clusterName}, Data: map[string][]byte{"token": []byte(token)}}
	secrets := inv.hub.Client.CoreV1().Secrets(inv.ns)
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err == nil {
		return
	}
	if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// accessTo is the secretreader access provider of a member's apiserver.
func accessTo(t testing.TB, c *kube.Cluster, clusterName string) cpv1a1.AccessProvider {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(c.Dir, "certs", "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ext, _ := json.Marshal(map[string]string{"clusterName": clusterName})
	return cpv1a1.AccessProvider{Name: "secretreader", Cluster: clientcmdv1.Cluster{
		Server: c.URL(), CertificateAuthorityData: ca,
		Extensions: []clientcmdv1.NamedExtension{{Name: "client.authentication.k8s.io/exec", Extension: runtime.RawExtension{Raw: ext}}},
	}}
}

// profile creates or updates a ClusterProfile and its status.
func (inv *inventory) profile(t testing.TB, name string, provider cpv1a1.AccessProvider, healthy metav1.ConditionStatus, props map[string]string) {
	t.Helper()
	api := inv.cp.ApisV1alpha1().ClusterProfiles(inv.ns)
	p, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		p, err = api.Create(ctx, &cpv1a1.ClusterProfile{
			ObjectMeta: metav1.ObjectMeta{Namespace: inv.ns, Name: name, Labels: map[string]string{cpv1a1.LabelClusterManagerKey: "test-fleet"}},
			Spec:       cpv1a1.ClusterProfileSpec{DisplayName: name, ClusterManager: cpv1a1.ClusterManager{Name: "test-fleet"}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	p.Status.AccessProviders = []cpv1a1.AccessProvider{provider}
	p.Status.Properties = nil
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range props {
			if !yield(k) {
				return
			}
		}
	}) {
		p.Status.Properties = append(p.Status.Properties, cpv1a1.Property{Name: k, Value: props[k]})
	}
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{Type: cpv1a1.ClusterConditionControlPlaneHealthy, Status: healthy, Reason: "Test", Message: "set by the test"})
	if _, err := api.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// clusterInfo waits until the control plane's merge shows a member as
// check wants it.
func clusterInfo(t testing.TB, app *controlplane.App, member string, check func(mcs.ClusterInfo) error) {
	t.Helper()
	testkit.Eventually(t, "member "+member+" in the merge", func() error {
		snap := app.Writer.Snapshot()
		if snap == nil || snap.State == nil {
			return fmt.Errorf("nothing published")
		}
		for _, c := range snap.State.Clusters {
			if c.Member == member {
				return check(c)
			}
		}
		return fmt.Errorf("not a member")
	})
}

// memberStatus waits until a member's connection is as check wants it.
func memberStatus(t testing.TB, app *controlplane.App, name string, check func(source.ClusterStatus) error) {
	t.Helper()
	testkit.Eventually(t, "member "+name+"'s connection", func() error {
		for _, s := range app.MemberStatuses() {
			if s.Member == name {
				return check(s)
			}
		}
		return fmt.Errorf("no connection: %+v", app.MemberStatuses())
	})
}

func synced(s source.ClusterStatus) error {
	if s.State != source.StateSynced || s.Origin != source.OriginProfiles {
		return fmt.Errorf("%s from %s: %s", s.State, s.Origin, s.LastError)
	}
	return nil
}

// A fleet manager's ClusterProfiles are enough to run the ClusterSet: each
// profile is a member reached with the secretreader plugin's credentials
// alone (the control plane holds none of its own for it), whose
// properties come from the profile over the member's own; its health is
// shown and never drains it; a token rotated and revoked costs no failed
// write-back pass; a changed server reconnects the member to the other
// apiserver, replacing its state; two profiles claiming one cluster ID are
// both reported and the older keeps it; a plugin that fails fails its
// member alone; a deleted profile removes its member.
func TestClusterProfiles(t *testing.T) {
	clusters := kube.Start(t, "hub", "pa", "pb", "pc", "pd")
	hub := clusters[0]
	a, b, c, d := &member{Cluster: clusters[1], mcs: mustMCS(t, clusters[1])}, &member{Cluster: clusters[2], mcs: mustMCS(t, clusters[2])},
		&member{Cluster: clusters[3], mcs: mustMCS(t, clusters[3])}, &member{Cluster: clusters[4], mcs: mustMCS(t, clusters[4])}
	inv := startInventory(t, hub)
	const ns = "fleet"
	tokens := map[string]string{}
	for _, m := range []*member{a, b, c, d} {
		apply(t, m.Cluster, "../../deploy/kubernetes/member-rbac.yaml")
		m.namespace(t, ns)
		tokens[m.Name] = boundToken(t, m.Cluster, "token-1")
		inv.token(t, m.Name, tokens[m.Name])
	}
	a.service(t, clusterIPService(ns, "api"))
	a.slice(t, ns, "api", true, "10.2.0.1")
	a.export(t, ns, "api")
	c.service(t, clusterIPService(ns, "old"))
	c.slice(t, ns, "old", true, "10.3.0.1")
	c.export(t, ns, "old")
	d.service(t, clusterIPService(ns, "web"))
	d.slice(t, ns, "web", true, "10.4.0.1")
	d.export(t, ns, "web")
	// Member a says it is in eu-west-1; its profile says us-east-1.
	a.clusterProperty(t, about.PropertyRegion, "eu-west-1")

	app := cptest.StartWith(t, controlplane.Config{WriteBack: true, Resync: time.Minute,
		Profiles: &source.Profiles{Client: inv.cp, Namespace: inv.ns, ClusterManager: "test-fleet", ProviderFile: inv.provider}})

	inv.profile(t, "pa", accessTo(t, a.Cluster, "pa"), metav1.ConditionTrue, map[string]string{about.PropertyClusterID: "alpha", about.PropertyRegion: "us-east-1"})
	inv.profile(t, "pb", accessTo(t, b.Cluster, "pb"), metav1.ConditionTrue, nil)
	inv.profile(t, "pc", accessTo(t, c.Cluster, "pc"), metav1.ConditionTrue, nil)
	// (The first ClusterProfile waits 2 s in the apiserver, its CRD being
	// new: timed from the last one's status.)
	created := time.Now()
	for _, name := range []string{"pa", "pb", "pc"} {
		memberStatus(t, app, name, synced)
	}
	t.Logf("three ClusterProfiles created -> their members synced in %v", time.Since(created).Round(time.Millisecond))

	t.Run("the members are served and written to with the plugin's credentials", func(t *testing.T) {
		b.importIs(t, ns, "api", func(si *mcsv1b1.ServiceImport) error {
			if len(si.Status.Clusters) != 1 || si.Status.Clusters[0].Cluster != "alpha" {
				return fmt.Errorf("clusters %v: want alpha, the profile's cluster ID", si.Status.Clusters)
			}
			return nil
		})
		b.mcsSliceHas(t, ns, "api", "10.2.0.1")
		b.importIs(t, ns, "old", nil)
		t.Logf("profiles created -> ServiceImports written in %v", time.Since(created).Round(time.Millisecond))
	})

	t.Run("the profile's properties win over the member's own, with a warning", func(t *testing.T) {
		clusterInfo(t, app, "pa", func(ci mcs.ClusterInfo) error {
			if ci.ID != "alpha" || ci.Properties[about.PropertyRegion] != "us-east-1" || ci.Profile == nil || ci.Profile.Name != inv.ns+"/pa" {
				return fmt.Errorf("%+v", ci)
			}
			if !slices.ContainsFunc(ci.PropertyWarnings, func(w string) bool { return strings.Contains(w, "overridden by its ClusterProfile") }) {
				return fmt.Errorf("warnings %v", ci.PropertyWarnings)
			}
			return nil
		})
	})

	t.Run("an unhealthy control plane is shown and drains nothing", func(t *testing.T) {
		inv.profile(t, "pb", accessTo(t, b.Cluster, "pb"), metav1.ConditionFalse, nil)
		clusterInfo(t, app, "pb", func(ci mcs.ClusterInfo) error {
			if ci.Profile == nil || ci.Profile.Status != "False" || ci.ID != "pb" || ci.Error != "" {
				return fmt.Errorf("%+v", ci)
			}
			return nil
		})
		a.slice(t, ns, "api", true, "10.2.0.1", "10.2.0.9")
		b.mcsSliceHas(t, ns, "api", "10.2.0.9")
		// xds explain says it beside the member's properties.
		testkit.Eventually(t, "explain shows pb's health", func() error {
			code, body := get(t, "http://"+app.DebugAddr()+"/debug/explain?format=json&service="+ns+"/api")
			var e struct {
				Profiles map[string]mcs.ProfileInfo `json:"profiles"`
			}
			if code != 200 || json.Unmarshal([]byte(body), &e) != nil || e.Profiles["pb"].Status != "False" || e.Profiles["alpha"].Status != "True" {
				return fmt.Errorf("%d: %s", code, body)
			}
			return nil
		})
		if v := profileHealthMetric(t, app, "pb"); v != "False" {
			t.Errorf("eastwest_member_profile_control_plane_healthy for pb: status %q, want False", v)
		}
	})

	t.Run("a rotated and revoked token costs no failed write", func(t *testing.T) {
		inv.token(t, "pb", boundToken(t, b.Cluster, "token-2"))
		failed := memberFailures(t, app, "pb")
		revoke(t, b.Cluster, "token-1", tokens["pb"])
		a.slice(t, ns, "api", true, "10.2.0.2")
		b.mcsSliceHas(t, ns, "api", "10.2.0.2")
		a.slice(t, ns, "api", true, "10.2.0.3")
		b.mcsSliceHas(t, ns, "api", "10.2.0.3")
		if n := memberFailures(t, app, "pb"); n != failed {
			t.Errorf("%v write-back passes failed in pb after the rotation (%+v)", n-failed, app.WriteBack().Retrying)
		}
		memberStatus(t, app, "pb", func(s source.ClusterStatus) error {
			if s.Generation != 1 {
				return fmt.Errorf("generation %d: a rotated credential needs no new connection", s.Generation)
			}
			return synced(s)
		})
	})

	t.Run("a changed server reconnects the member to the other apiserver", func(t *testing.T) {
		inv.profile(t, "pc", accessTo(t, d.Cluster, "pd"), metav1.ConditionTrue, nil)
		memberStatus(t, app, "pc", func(s source.ClusterStatus) error {
			if s.Generation != 2 {
				return fmt.Errorf("generation %d", s.Generation)
			}
			return synced(s)
		})
		b.importIs(t, ns, "web", nil)
		b.mcsSliceHas(t, ns, "web", "10.4.0.1")
		b.noImport(t, ns, "old")
	})

	t.Run("two profiles claiming one cluster ID: the older keeps it, both are told", func(t *testing.T) {
		inv.profile(t, "pa2", accessTo(t, a.Cluster, "pa"), metav1.ConditionTrue, map[string]string{about.PropertyClusterID: "alpha"})
		clusterInfo(t, app, "pa2", func(ci mcs.ClusterInfo) error {
			if ci.ID != "" || !strings.Contains(ci.Error, `cluster ID "alpha" is already used by member "pa"`) {
				return fmt.Errorf("%+v", ci)
			}
			return nil
		})
		clusterInfo(t, app, "pa", func(ci mcs.ClusterInfo) error {
			if ci.ID != "alpha" || !slices.ContainsFunc(ci.PropertyWarnings, func(w string) bool { return strings.Contains(w, `claimed by member "pa2" too`) }) {
				return fmt.Errorf("%+v", ci)
			}
			return nil
		})
	})

	t.Run("a changed provider file reconnects the members it reaches", func(t *testing.T) {
		b, err := os.ReadFile(inv.provider)
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(b), `"env":[`, `"env":[{"name":"PLUGIN_LOG","value":"1"},`, 1)
		if changed == string(b) {
			t.Fatalf("no env in %s", b)
		}
		writeFile(t, inv.provider, []byte(changed))
		memberStatus(t, app, "pb", func(s source.ClusterStatus) error {
			if s.Generation != 2 {
				return fmt.Errorf("generation %d", s.Generation)
			}
			return synced(s)
		})
	})

	t.Run("a plugin that fails fails its member alone", func(t *testing.T) {
		inv.profile(t, "broken", accessTo(t, d.Cluster, "no-such-secret"), metav1.ConditionTrue, nil)
		memberStatus(t, app, "broken", func(s source.ClusterStatus) error {
			if s.State != source.StateFailing || !strings.Contains(s.LastError, "getting credentials: exec") {
				return fmt.Errorf("%s: %q", s.State, s.LastError)
			}
			return nil
		})
		other := accessTo(t, d.Cluster, "pd")
		other.Name = "not-in-the-file"
		inv.profile(t, "unknown", other, metav1.ConditionTrue, nil)
		memberStatus(t, app, "unknown", func(s source.ClusterStatus) error {
			if s.State != source.StateFailing || !strings.Contains(s.LastError, "no matching cluster accessor") {
				return fmt.Errorf("%s: %q", s.State, s.LastError)
			}
			return nil
		})
		for _, name := range []string{"pa", "pb", "pc"} {
			memberStatus(t, app, name, synced)
		}
		a.slice(t, ns, "api", true, "10.2.0.4")
		b.mcsSliceHas(t, ns, "api", "10.2.0.4")
	})

	t.Run("a deleted profile removes its member", func(t *testing.T) {
		if err := inv.cp.ApisV1alpha1().ClusterProfiles(inv.ns).Delete(ctx, "pc", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		b.noImport(t, ns, "web")
		testkit.Eventually(t, "pc gone", func() error {
			for _, s := range app.MemberStatuses() {
				if s.Member == "pc" {
					return fmt.Errorf("still %+v", s)
				}
			}
			return nil
		})
	})

	t.Run("the kubeconfig-secretreader plugin reaches a member too", func(t *testing.T) {
		inv.profile(t, "pk", inv.kubeconfigAccessTo(t, d.Cluster, "pk-kubeconfig", tokens[d.Name]), metav1.ConditionTrue, nil)
		memberStatus(t, app, "pk", synced)
		b.importIs(t, ns, "web", func(si *mcsv1b1.ServiceImport) error {
			if len(si.Status.Clusters) != 1 || si.Status.Clusters[0].Cluster != "pk" {
				return fmt.Errorf("clusters %v", si.Status.Clusters)
			}
			return nil
		})
	})
}

// kubeconfigAccessTo is the kubeconfig-secretreader access provider of a
// member's apiserver: the plugin reads the credentials of a kubeconfig
// kept in the Secret named secret (key kubeconfig) of the inventory.
func (inv *inventory) kubeconfigAccessTo(t testing.TB, c *kube.Cluster, secret, token string) cpv1a1.AccessProvider {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: inv.ns, Name: secret}, Data: map[string][]byte{"kubeconfig": serviceAccountKubeconfig(t, c, token)}}
	if _, err := inv.hub.Client.CoreV1().Secrets(inv.ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a := accessTo(t, c, "")
	a.Name = "kubeconfig-secretreader"
	ext, _ := json.Marshal(map[string]string{"name": secret, "key": "kubeconfig"})
	a.Cluster.Extensions[0].Extension.Raw = ext
	return a
}

// clusterProperty creates one of the member's own About API
// ClusterProperties.
func (m *member) clusterProperty(t testing.TB, name, value string) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": about.GroupVersion.String(), "kind": "ClusterProperty",
		"metadata": map[string]any{"name": name}, "spec": map[string]any{"value": value},
	}}
	if _, err := m.Dynamic.Resource(about.GroupVersion.WithResource(about.Resource)).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// profileHealthMetric is the status label of a member's
// eastwest_member_profile_control_plane_healthy series.
func profileHealthMetric(t testing.TB, app *controlplane.App, name string) string {
	t.Helper()
	for _, m := range series(t, app, "eastwest_member_profile_control_plane_healthy") {
		if m.labels["member"] == name {
			return m.labels["status"]
		}
	}
	return ""
}
