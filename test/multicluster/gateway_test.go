package multicluster

import (
	"fmt"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// TestGatewayStatusInCluster guards the Gateway API status write-back
// against real apiservers: a GatewayClass, Gateway and HTTPRoute created
// in member a get their statuses written there by the leader (with the
// objects' generations), the route's backend is a ServiceImport of a
// service exported only from b, a ReferenceGrant added or removed in a
// flips ResolvedRefs (and the Gateway's Envoy gets the backend or 500s),
// and a converged status is not written again.
func TestGatewayStatusInCluster(t *testing.T) {
	cs := kube.Start(t, "a", "b")
	a := &member{Cluster: cs[0], mcs: mustMCS(t, cs[0])}
	b := &member{Cluster: cs[1], mcs: mustMCS(t, cs[1])}
	b.service(t, clusterIPService("shop", "cart"))
	b.slice(t, "shop", "cart", true, "10.7.0.1")
	b.export(t, "shop", "cart")
	a.namespace(t, "shop")
	a.namespace(t, "infra")
	app := cptest.StartWith(t, controlplane.Config{KubeconfigDir: kubeconfigDir(t, cs...), WriteBack: true, Resync: time.Second})
	gw, err := gwclient.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	api := gw.GatewayV1()

	class := &gwapiv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "eastwest"}, Spec: gwapiv1.GatewayClassSpec{ControllerName: "eastwest.io/gateway-controller"}}
	if _, err := api.GatewayClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	all := gwapiv1.NamespacesFromAll
	gateway := &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "public"}, Spec: gwapiv1.GatewaySpec{
		GatewayClassName: "eastwest",
		Listeners: []gwapiv1.Listener{{Name: "web", Port: 80, Protocol: gwapiv1.HTTPProtocolType,
			AllowedRoutes: &gwapiv1.AllowedRoutes{Namespaces: &gwapiv1.RouteNamespaces{From: &all}}}},
	}}
	if _, err := api.Gateways("infra").Create(ctx, gateway, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	group, kind, ns, port := gwapiv1.Group("multicluster.x-k8s.io"), gwapiv1.Kind("ServiceImport"), gwapiv1.Namespace("shop"), gwapiv1.PortNumber(80)
	route := &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "web"}}
	route.Spec.ParentRefs = []gwapiv1.ParentReference{{Name: "public"}}
	route.Spec.Rules = []gwapiv1.HTTPRouteRule{{BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: gwapiv1.BackendRef{
		BackendObjectReference: gwapiv1.BackendObjectReference{Group: &group, Kind: &kind, Namespace: &ns, Name: "cart", Port: &port}}}}}}
	if _, err := api.HTTPRoutes("infra").Create(ctx, route, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	condIs := func(conds []metav1.Condition, typ string, status metav1.ConditionStatus, reason string, gen int64) error {
		c := meta.FindStatusCondition(conds, typ)
		switch {
		case c == nil:
			return fmt.Errorf("no %s condition in %v", typ, conds)
		case c.Status != status || c.Reason != reason:
			return fmt.Errorf("%s is %s/%s (%s), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
		case c.ObservedGeneration != gen:
			return fmt.Errorf("%s observedGeneration %d, want %d", typ, c.ObservedGeneration, gen)
		case c.LastTransitionTime.IsZero():
			return fmt.Errorf("%s has no lastTransitionTime", typ)
		}
		return nil
	}
	testkit.Eventually(t, "the GatewayClass is Accepted", func() error {
		gc, err := api.GatewayClasses().Get(ctx, "eastwest", metav1.GetOptions{})
		if err != nil {
			return err
		}
		return condIs(gc.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", gc.Generation)
	})
	gatewayIs := func(status metav1.ConditionStatus, reason string) func() error {
		return func() error {
			g, err := api.Gateways("infra").Get(ctx, "public", metav1.GetOptions{})
			if err != nil {
				return err
			}
			return condIs(g.Status.Conditions, "Programmed", status, reason, g.Generation)
		}
	}
	// No Service in front of its Envoys yet (provisioning is off here):
	// no address, so not Programmed, while its listener is.
	testkit.Eventually(t, "the Gateway is Accepted, not Programmed (no address), its listener has the route", func() error {
		g, err := api.Gateways("infra").Get(ctx, "public", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := condIs(g.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", g.Generation); err != nil {
			return err
		}
		if err := condIs(g.Status.Conditions, "Programmed", metav1.ConditionFalse, "AddressNotAssigned", g.Generation); err != nil {
			return err
		}
		if len(g.Status.Listeners) != 1 || g.Status.Listeners[0].AttachedRoutes != 1 {
			return fmt.Errorf("listeners %+v", g.Status.Listeners)
		}
		return condIs(g.Status.Listeners[0].Conditions, "Programmed", metav1.ConditionTrue, "Programmed", g.Generation)
	})
	routeIs := func(status metav1.ConditionStatus, reason string) func() error {
		return func() error {
			r, err := api.HTTPRoutes("infra").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(r.Status.Parents) != 1 || r.Status.Parents[0].ControllerName != "eastwest.io/gateway-controller" {
				return fmt.Errorf("parents %+v", r.Status.Parents)
			}
			if err := condIs(r.Status.Parents[0].Conditions, "Accepted", metav1.ConditionTrue, "Accepted", r.Generation); err != nil {
				return err
			}
			return condIs(r.Status.Parents[0].Conditions, "ResolvedRefs", status, reason, r.Generation)
		}
	}
	view := translate.View{Cluster: "a", Role: translate.RoleGatewayAPI, Gateway: "infra/public"}.String()
	envoyGets := func(cluster string) func() error {
		return func() error {
			rs := app.Cache.Resources(view, resourcev3.RouteType).Resources
			if len(rs) != 1 {
				return fmt.Errorf("view %s has %d route configurations", view, len(rs))
			}
			rt := rs[0].Message.(*routev3.RouteConfiguration).VirtualHosts[0].Routes[0]
			if got := rt.GetRoute().GetCluster(); got == cluster || (cluster == "" && rt.GetDirectResponse().GetStatus() == 500) {
				return nil
			}
			return fmt.Errorf("the Gateway's route is %v", rt)
		}
	}
	testkit.Eventually(t, "without a ReferenceGrant the route's backend is RefNotPermitted", routeIs(metav1.ConditionFalse, "RefNotPermitted"))
	testkit.Eventually(t, "and the Gateway's Envoy answers 500", envoyGets(""))

	grant := &gwapiv1.ReferenceGrant{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "infra-routes"}, Spec: gwapiv1.ReferenceGrantSpec{
		From: []gwapiv1.ReferenceGrantFrom{{Group: gwapiv1.GroupName, Kind: "HTTPRoute", Namespace: "infra"}},
		To:   []gwapiv1.ReferenceGrantTo{{Group: "multicluster.x-k8s.io", Kind: "ServiceImport"}},
	}}
	if _, err := api.ReferenceGrants("shop").Create(ctx, grant, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "a ReferenceGrant resolves the backend", routeIs(metav1.ConditionTrue, "ResolvedRefs"))
	cart := translate.ClusterName(mcs.ServiceKey{Namespace: "shop", Name: "cart"}, 80)
	testkit.Eventually(t, "and the Gateway's Envoy routes to the ServiceImport's cluster", envoyGets(cart))

	// A spec change: observedGeneration follows, and the status update is
	// counted with the write-back's writes (no MCS object changes).
	writes := app.WriteBack().Writes
	r, err := api.HTTPRoutes("infra").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Spec.Hostnames = []gwapiv1.Hostname{"shop.example.com"}
	if _, err := api.HTTPRoutes("infra").Update(ctx, r, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "observedGeneration follows the route's generation", routeIs(metav1.ConditionTrue, "ResolvedRefs"))
	testkit.Eventually(t, "the status update counted in eastwest_writeback_writes_total", func() error {
		if n := metricValue(t, app, "eastwest_writeback_writes_total"); n <= float64(writes) {
			return fmt.Errorf("%v writes, %d before the route changed", n, writes)
		}
		return nil
	})

	// Converged: two more passes, full ones at the resyncs (every second
	// here), write nothing. (Waiting for the passes, not for a time: a
	// slow pass cannot make this pass.)
	testkit.Eventually(t, "no pass running", func() error {
		if n := app.WriteBack().Pending; n != 0 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	before, err := api.HTTPRoutes("infra").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := twoPasses(t, app); n != 0 {
		t.Errorf("a converged write-back wrote %d times in two passes", n)
	}
	// Provisioning is off here (Config.ProvisionGateways, xds serve
	// --provision-gateways=false): the Envoys are someone else's to deploy.
	if deps, err := a.Client.AppsV1().Deployments("infra").List(ctx, metav1.ListOptions{}); err != nil || len(deps.Items) != 0 {
		t.Errorf("with provisioning off, Deployments in the Gateway's namespace: %v %v", deps, err)
	}
	after, err := api.HTTPRoutes("infra").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("a converged route status was written again (resourceVersion %s -> %s)", before.ResourceVersion, after.ResourceVersion)
	}

	if err := api.ReferenceGrants("shop").Delete(ctx, "infra-routes", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "removing the ReferenceGrant flips ResolvedRefs back", routeIs(metav1.ConditionFalse, "RefNotPermitted"))
	testkit.Eventually(t, "and the Gateway's Envoy answers 500 again", envoyGets(""))

	// HTTPS: a listener's certificate Secret (read through the TLS-only
	// Secret informer) reaches the Envoy over SDS; without it the listener
	// says InvalidCertificateRef.
	if _, err := a.Client.CoreV1().Secrets("infra").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "public-cert"},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{corev1.TLSCertKey: testCert, corev1.TLSPrivateKeyKey: testKey}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	g, err := api.Gateways("infra").Get(ctx, "public", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.Spec.Listeners = append(g.Spec.Listeners, gwapiv1.Listener{Name: "tls", Port: 443, Protocol: gwapiv1.HTTPSProtocolType,
		TLS: &gwapiv1.ListenerTLSConfig{CertificateRefs: []gwapiv1.SecretObjectReference{{Name: "public-cert"}}}})
	if _, err := api.Gateways("infra").Update(ctx, g, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := translate.SecretName(types.NamespacedName{Namespace: "infra", Name: "public-cert"})
	testkit.Eventually(t, "the HTTPS listener's certificate is served over SDS", func() error {
		if !app.Cache.Has(view, resourcev3.SecretType, secret) {
			return fmt.Errorf("no secret %s in %s", secret, view)
		}
		return nil
	})
	listenerIs := func(reason string, status metav1.ConditionStatus) func() error {
		return func() error {
			g, err := api.Gateways("infra").Get(ctx, "public", metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, l := range g.Status.Listeners {
				if l.Name == "tls" {
					return condIs(l.Conditions, "ResolvedRefs", status, reason, g.Generation)
				}
			}
			return fmt.Errorf("no status for listener tls: %+v", g.Status.Listeners)
		}
	}
	testkit.Eventually(t, "the HTTPS listener resolves its certificate", listenerIs("ResolvedRefs", metav1.ConditionTrue))
	if err := a.Client.CoreV1().Secrets("infra").Delete(ctx, "public-cert", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "without the Secret the listener says InvalidCertificateRef", listenerIs("InvalidCertificateRef", metav1.ConditionFalse))
	testkit.Eventually(t, "and the certificate is no longer served", func() error {
		if app.Cache.Has(view, resourcev3.SecretType, secret) {
			return fmt.Errorf("secret %s still served", secret)
		}
		return nil
	})

	// The Service in front of the Gateway's Envoys (GEP-1762 label) gives
	// the Gateway its address.
	front, err := a.Client.CoreV1().Services("infra").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "envoy-public", Labels: map[string]string{gwapiv1.GatewayNameLabelKey: "public"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the Gateway's status.addresses are its Service's cluster IP", func() error {
		g, err := api.Gateways("infra").Get(ctx, "public", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(g.Status.Addresses) == 0 || g.Status.Addresses[0].Value != front.Spec.ClusterIP {
			return fmt.Errorf("addresses %+v, want %s", g.Status.Addresses, front.Spec.ClusterIP)
		}
		return nil
	})
	testkit.Eventually(t, "with no Envoy Ready behind it, the Gateway is Pending", gatewayIs(metav1.ConditionFalse, "Pending"))
	ready := true
	if _, err := a.Client.DiscoveryV1().EndpointSlices("infra").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "infra", Name: "envoy-public-1", Labels: map[string]string{discoveryv1.LabelServiceName: "envoy-public"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "an Envoy Ready behind its Service: the Gateway is Programmed", gatewayIs(metav1.ConditionTrue, "Programmed"))

	// A route that leaves eastwest's Gateways loses eastwest's parent
	// status (another controller's parents would stay).
	r, err = api.HTTPRoutes("infra").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Spec.ParentRefs = []gwapiv1.ParentReference{{Name: "someone-elses"}}
	if _, err := api.HTTPRoutes("infra").Update(ctx, r, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "eastwest's parent status is removed from a route that left its Gateways", func() error {
		r, err := api.HTTPRoutes("infra").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(r.Status.Parents) != 0 {
			return fmt.Errorf("parents %+v", r.Status.Parents)
		}
		return nil
	})

	// Nothing was written into b, which holds none of these objects.
	if l, err := gwclient.NewForConfigOrDie(b.Config).GatewayV1().HTTPRoutes("").List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("routes in b: %v, %v", l, err)
	}
}

// testCert and testKey are a throwaway self-signed certificate and key
// made for this test (CN secure.example.com).
var testCert = []byte(`-----BEGIN CERTIFICATE-----
MIIBrzCCAVagAwIBAgIUWhzxBUgai7pvRDJLikI7iVm/WJMwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSc2VjdXJlLmV4YW1wbGUuY29tMCAXDTI2MTEyMjAzNDkxM1oY
DzIxMjYxMDI5MDM0OTEzWjAdMRswGQYDVQQDDBJzZWN1cmUuZXhhbXBsZS5jb20w
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATzRHC8ioUES7C3ZAmRiKFEfjTX7VTC
bzJa6SNEe0R+QCEhG/NEDFdOWez4TX3od/Z4sSsgdMKICSimAgN6tVjyo3IwcDAd
BgNVHQ4EFgQUE8sZZdnej6ZHDWkDltF65oL+w1YwHwYDVR0jBBgwFoAUE8sZZdne
j6ZHDWkDltF65oL+w1YwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHREEFjAUghJzZWN1
cmUuZXhhbXBsZS5jb20wCgYIKoZIzj0EAwIDRwAwRAIgdnQ09hkow51tnv2qBP2c
OFo/XE2tjuilU8jVKAjBR7sCIGxOaTsaqig4ZpqUihfUZT3YwUxjOweYkXZmU/nv
LTUn
-----END CERTIFICATE-----
`)

var testKey = []byte(`-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLFIKhdawtv2bsEsw
DXLPP0G/Llow7DtVZX3NivHLfHWhRANCAATzRHC8ioUES7C3ZAmRiKFEfjTX7VTC
bzJa6SNEe0R+QCEhG/NEDFdOWez4TX3od/Z4sSsgdMKICSimAgN6tVjy
-----END PRIVATE KEY-----
`)
