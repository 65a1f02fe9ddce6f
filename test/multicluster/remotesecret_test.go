package multicluster

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/manifest"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// apply creates every object of a manifest file, as kubectl apply would
// for new objects.
func apply(t *testing.T, c *kube.Cluster, file string) {
	t.Helper()
	objs, err := manifest.File(file)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))
	for _, u := range objs {
		m, err := mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
		if err != nil {
			t.Fatal(err)
		}
		res := c.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace())
		if _, err := res.Create(ctx, &u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

// A member joins through a remote secret made by create-remote-secret:
// eastwest reads and writes it with only the ServiceAccount and RBAC of
// deploy/kubernetes/member-rbac.yaml, and the member leaves when the
// secret is deleted.
func TestRemoteSecret(t *testing.T) {
	cs := kube.Start(t, "home", "remote")
	home, remote := cs[0], cs[1]
	apply(t, remote, "../../deploy/kubernetes/member-rbac.yaml")
	admin, err := clientcmd.LoadFromFile(remote.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := source.RemoteSecret(ctx, admin, source.RemoteSecretOptions{Member: "remote", Namespace: "eastwest-system", ServiceAccount: "eastwest", TokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(secret.Data[source.SecretKubeconfigKey], []byte(readToken(t, remote.Kubeconfig))) {
		t.Fatal("the remote secret carries the admin's token")
	}
	homeMember := &member{Cluster: home, mcs: mustMCS(t, home)}
	remoteMember := &member{Cluster: remote, mcs: mustMCS(t, remote)}
	homeMember.namespace(t, "eastwest-system")
	if _, err := home.Client.CoreV1().Secrets("eastwest-system").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cptest.StartWith(t, controlplane.Config{KubeconfigDir: kubeconfigDir(t, home), WriteBack: true, Resync: time.Second,
		RemoteSecrets: &source.Secrets{Client: home.Client, Namespace: "eastwest-system"}})

	ns := "rs"
	homeMember.namespace(t, ns)
	remoteMember.service(t, clusterIPService(ns, "api"))
	remoteMember.slice(t, ns, "api", true, "10.9.0.1")
	remoteMember.export(t, ns, "api")
	homeMember.importIs(t, ns, "api", func(si *mcsv1b1.ServiceImport) error {
		if len(si.Status.Clusters) != 1 || si.Status.Clusters[0].Cluster != "remote" {
			return fmt.Errorf("clusters %v", si.Status.Clusters)
		}
		return nil
	})
	remoteMember.importIs(t, ns, "api", nil)
	remoteMember.condition(t, ns, "api", "Valid", metav1.ConditionTrue, "Valid")

	if err := home.Client.CoreV1().Secrets("eastwest-system").Delete(ctx, secret.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	homeMember.noImport(t, ns, "api")
}

func mustMCS(t testing.TB, c *kube.Cluster) mcsclient.Interface {
	t.Helper()
	mc, err := mcsclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

func readToken(t *testing.T, kubeconfig string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		return a.Token
	}
	return "none"
}

// create-remote-secret's --context picks the member's context in a
// kubeconfig of many (the current one may be another cluster), and
// --server writes the address the control plane reaches the member at
// (the token is still requested through the kubeconfig's).
func TestRemoteSecretContextAndServer(t *testing.T) {
	remote := kube.Start(t, "remote")[0]
	apply(t, remote, "../../deploy/kubernetes/member-rbac.yaml")
	admin, err := clientcmd.LoadFromFile(remote.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// The member's context under another name, and a current context
	// that points nowhere.
	own := admin.Contexts[admin.CurrentContext].DeepCopy()
	admin.Contexts["member"] = own
	admin.Clusters["elsewhere"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	admin.Contexts["elsewhere"] = &clientcmdapi.Context{Cluster: "elsewhere", AuthInfo: own.AuthInfo}
	admin.CurrentContext = "elsewhere"
	opts := source.RemoteSecretOptions{Member: "remote", Namespace: "eastwest-system", ServiceAccount: "eastwest", TokenTTL: time.Hour,
		Context: "member", Server: "https://remote.example:6443"}
	secret, err := source.RemoteSecret(ctx, admin, opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := clientcmd.Load(secret.Data[source.SecretKubeconfigKey])
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Clusters["remote"].Server; got != "https://remote.example:6443" {
		t.Errorf("the Secret's server is %q, want --server's", got)
	}
	for _, bad := range []struct {
		context, server, want string
	}{
		{"nosuch", "", `context "nosuch" does not exist`},
		{"member", "http://remote.example", "want https://HOST[:PORT]"},
		{"member", "https://remote.example/path", "want https://HOST[:PORT]"},
	} {
		o := opts
		o.Context, o.Server = bad.context, bad.server
		if _, err := source.RemoteSecret(ctx, admin, o); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("context %q server %q: %v, want %q", bad.context, bad.server, err, bad.want)
		}
	}
}
