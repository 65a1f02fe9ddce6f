package multicluster

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/provision"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// A Gateway of an eastwest class gets its Envoys from the write-back
// leader of its member (GEP-1762), against a real apiserver: the
// Deployment, Service, ServiceAccount, PodDisruptionBudget and bootstrap
// named <gateway>-<class>, labelled and owned as the GEP says, tuned by
// the class's GatewayParameters, an identity Secret signed by the
// member's issuer for the Gateway's identity, the Service's address in
// the Gateway's status; an object of that name someone else made is never
// taken over; a converged member is not written again; the parameters'
// status says whether they can be used, and parameters that cannot leave
// what was deployed in place; a changed parameter is applied; a deleted
// Gateway's objects go.
func TestGatewayProvisioning(t *testing.T) {
	cs := kube.Start(t, "a")
	a := &member{Cluster: cs[0], mcs: mustMCS(t, cs[0])}
	a.namespace(t, "infra")
	a.namespace(t, "eastwest-system")
	ca := cptest.NewCA(t)
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.CoreV1().Secrets("eastwest-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "member-ca", Namespace: "eastwest-system"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: caPEM, corev1.TLSPrivateKeyKey: ca.KeyPEM(t)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	params := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": provision.GroupVersion.String(), "kind": provision.KindGatewayParameters,
		"metadata": map[string]any{"name": "envoys", "namespace": "eastwest-system"},
		"spec": map[string]any{
			"image": "registry.example.com/envoy:v1.40.0", "replicas": int64(2),
			"xds":      map[string]any{"address": "eastwest.eastwest-system.svc:18000"},
			"identity": map[string]any{"issuerSecret": map[string]any{"namespace": "eastwest-system", "name": "member-ca"}},
		},
	}}
	paramsAPI := a.Dynamic.Resource(provision.GroupVersion.WithResource("gatewayparameters")).Namespace("eastwest-system")
	if _, err := paramsAPI.Create(ctx, params, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	app := cptest.StartWith(t, controlplane.Config{KubeconfigDir: kubeconfigDir(t, cs...), WriteBack: true, Resync: time.Second, ProvisionGateways: true})
	gw, err := gwclient.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	api := gw.GatewayV1()
	ns := gwapiv1.Namespace("eastwest-system")
	class := &gwapiv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "eastwest"}, Spec: gwapiv1.GatewayClassSpec{
		ControllerName: "eastwest.io/gateway-controller",
		ParametersRef:  &gwapiv1.ParametersReference{Group: "eastwest.io", Kind: provision.KindGatewayParameters, Name: "envoys", Namespace: &ns},
	}}
	if _, err := api.GatewayClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gateway := &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "public"}, Spec: gwapiv1.GatewaySpec{
		GatewayClassName: "eastwest",
		Infrastructure:   &gwapiv1.GatewayInfrastructure{Labels: map[gwapiv1.LabelKey]gwapiv1.LabelValue{"team": "infra"}},
		Listeners:        []gwapiv1.Listener{{Name: "web", Port: 80, Protocol: gwapiv1.HTTPProtocolType}},
	}}
	// Someone's ConfigMap of the name eastwest would give the Envoys'
	// bootstrap: eastwest never takes it over, and deploys nothing that
	// would mount it.
	if _, err := a.Client.CoreV1().ConfigMaps("infra").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "public-eastwest", Namespace: "infra"},
		Data: map[string]string{"mine": "yes"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	created, err := api.Gateways("infra").Create(ctx, gateway, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the Envoys' ServiceAccount (applied before the ConfigMap)", func() error {
		_, err := a.Client.CoreV1().ServiceAccounts("infra").Get(ctx, "public-eastwest", metav1.GetOptions{})
		return err
	})
	twoPasses(t, app)
	if cm, err := a.Client.CoreV1().ConfigMaps("infra").Get(ctx, "public-eastwest", metav1.GetOptions{}); err != nil || cm.Data["mine"] != "yes" || cm.Data["bootstrap.json"] != "" {
		t.Errorf("someone's ConfigMap was taken over: %v %v", cm.Data, err)
	}
	if _, err := a.Client.AppsV1().Deployments("infra").Get(ctx, "public-eastwest", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Deployment was made to mount someone's ConfigMap (%v)", err)
	}
	if err := a.Client.CoreV1().ConfigMaps("infra").Delete(ctx, "public-eastwest", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	const name = "public-eastwest"
	var dep *appsv1.Deployment
	testkit.Eventually(t, "the Gateway's Envoy Deployment", func() error {
		dep, err = a.Client.AppsV1().Deployments("infra").Get(ctx, name, metav1.GetOptions{})
		return err
	})
	labels := map[string]string{"gateway.networking.k8s.io/gateway-name": "public", "gateway.networking.k8s.io/gateway-class-name": "eastwest", "team": "infra"}
	for k, v := range labels {
		if dep.Labels[k] != v {
			t.Errorf("Deployment label %s = %q, want %q", k, dep.Labels[k], v)
		}
	}
	if len(dep.OwnerReferences) != 1 || dep.OwnerReferences[0].UID != created.UID || dep.OwnerReferences[0].Kind != "Gateway" {
		t.Errorf("Deployment owners %+v, want the Gateway", dep.OwnerReferences)
	}
	if c := dep.Spec.Template.Spec.Containers[0]; c.Image != "registry.example.com/envoy:v1.40.0" || *dep.Spec.Replicas != 2 {
		t.Errorf("Deployment image %s replicas %d: not the class's parameters", c.Image, *dep.Spec.Replicas)
	}
	for what, get := range map[string]func() error{
		"ServiceAccount": func() error {
			_, err := a.Client.CoreV1().ServiceAccounts("infra").Get(ctx, name, metav1.GetOptions{})
			return err
		},
		"PodDisruptionBudget": func() error {
			_, err := a.Client.PolicyV1().PodDisruptionBudgets("infra").Get(ctx, name, metav1.GetOptions{})
			return err
		},
		"bootstrap ConfigMap": func() error {
			cm, err := a.Client.CoreV1().ConfigMaps("infra").Get(ctx, name, metav1.GetOptions{})
			if err == nil && !strings.Contains(cm.Data["bootstrap.json"], "eastwest.eastwest-system.svc") {
				return fmt.Errorf("the bootstrap does not name the parameters' control plane")
			}
			return err
		},
	} {
		testkit.Eventually(t, "the Envoys' "+what, get)
	}
	svc, err := a.Client.CoreV1().Services("infra").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 {
		t.Errorf("Service %s %+v, want a LoadBalancer on the listener's port 80", svc.Spec.Type, svc.Spec.Ports)
	}

	// The identity: the Gateway's, signed by the member's CA.
	var secret *corev1.Secret
	testkit.Eventually(t, "the Envoys' identity Secret", func() error {
		secret, err = a.Client.CoreV1().Secrets("infra").Get(ctx, name+"-xds", metav1.GetOptions{})
		return err
	})
	block, _ := pem.Decode(secret.Data[corev1.TLSCertKey])
	if block == nil {
		t.Fatal("the identity Secret has no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	wantID := "spiffe://eastwest.io/clusterset/default/cluster/a/role/gateway-api/gateway/infra/public"
	if len(cert.URIs) != 1 || cert.URIs[0].String() != wantID {
		t.Errorf("identity %v, want %s", cert.URIs, wantID)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the identity is not the member CA's: %v", err)
	}

	// No load balancer here: the LoadBalancer Service has no address, nor
	// has the Gateway (its cluster IP is not where clients outside reach
	// it), until a load balancer gives one.
	testkit.Eventually(t, "no address while the load balancer has none: AddressNotAssigned", func() error {
		g, err := api.Gateways("infra").Get(ctx, "public", metav1.GetOptions{})
		if err != nil {
			return err
		}
		c := meta.FindStatusCondition(g.Status.Conditions, "Programmed")
		if len(g.Status.Addresses) != 0 || c == nil || c.Reason != "AddressNotAssigned" {
			return fmt.Errorf("addresses %+v, Programmed %+v", g.Status.Addresses, c)
		}
		return nil
	})
	svc, err = a.Client.CoreV1().Services("infra").Get(ctx, svc.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.7"}}
	if _, err := a.Client.CoreV1().Services("infra").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the Gateway's address: its Service's load balancer's", func() error {
		g, err := api.Gateways("infra").Get(ctx, "public", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(g.Status.Addresses) != 1 || g.Status.Addresses[0].Value != "192.0.2.7" {
			return fmt.Errorf("addresses %+v, want 192.0.2.7", g.Status.Addresses)
		}
		return nil
	})

	// Converged: nothing is written again, the identity is not renewed.
	testkit.Eventually(t, "write-back idle", func() error {
		if n := app.WriteBack().Pending; n != 0 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	if n := twoPasses(t, app); n != 0 {
		t.Errorf("a converged member was written %d times in two passes", n)
	}

	testkit.Eventually(t, "the GatewayParameters Accepted", func() error {
		u, err := paramsAPI.Get(ctx, "envoys", metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		if len(conds) != 1 || conds[0].(map[string]any)["status"] != "True" || conds[0].(map[string]any)["type"] != "Accepted" {
			return fmt.Errorf("conditions %v", conds)
		}
		return nil
	})

	// A changed parameter is applied.
	if _, err := paramsAPI.Patch(ctx, "envoys", "application/merge-patch+json", []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// Parameters that cannot be used say so, and what was deployed stays.
	if _, err := paramsAPI.Patch(ctx, "envoys", "application/merge-patch+json", []byte(`{"spec":{"xds":{"address":"no-port"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the GatewayParameters not Accepted: Invalid, the mistake said", func() error {
		u, err := paramsAPI.Get(ctx, "envoys", metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		if len(conds) != 1 || conds[0].(map[string]any)["reason"] != "Invalid" || !strings.Contains(fmt.Sprint(conds[0].(map[string]any)["message"]), "no-port") {
			return fmt.Errorf("conditions %v", conds)
		}
		return nil
	})
	twoPasses(t, app)
	if _, err := a.Client.AppsV1().Deployments("infra").Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("the Deployment went with the parameters' mistake: %v", err)
	}
	if _, err := paramsAPI.Patch(ctx, "envoys", "application/merge-patch+json", []byte(`{"spec":{"xds":{"address":"eastwest.eastwest-system.svc:18000"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the Deployment scaled to the parameters' 3 replicas", func() error {
		d, err := a.Client.AppsV1().Deployments("infra").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if *d.Spec.Replicas != 3 {
			return fmt.Errorf("%d replicas", *d.Spec.Replicas)
		}
		return nil
	})

	// A deleted Gateway's objects go (here without a garbage collector:
	// by the write-back's own sweep).
	if err := api.Gateways("infra").Delete(ctx, "public", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the deleted Gateway's Envoys gone", func() error {
		for what, get := range map[string]func() error{
			"Deployment": func() error {
				_, err := a.Client.AppsV1().Deployments("infra").Get(ctx, name, metav1.GetOptions{})
				return err
			},
			"Service": func() error {
				_, err := a.Client.CoreV1().Services("infra").Get(ctx, name, metav1.GetOptions{})
				return err
			},
			"Secret": func() error {
				_, err := a.Client.CoreV1().Secrets("infra").Get(ctx, name+"-xds", metav1.GetOptions{})
				return err
			},
		} {
			if err := get(); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%s still there (%w)", what, err)
			}
		}
		return nil
	})
}
