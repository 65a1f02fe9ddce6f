package multicluster

import (
	"fmt"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// A GRPCRoute on a ServiceImport, created in a member cluster, shapes the
// route its clients are served, and deleting it restores the default.
func TestMeshRoutesFromCluster(t *testing.T) {
	cs := kube.Start(t, "m")
	m := &member{Cluster: cs[0], mcs: mustMCS(t, cs[0])}
	for _, name := range []string{"api", "api-v2"} {
		m.service(t, clusterIPService("mesh", name))
		m.slice(t, "mesh", name, true, "10.5.0.1")
		m.export(t, "mesh", name)
	}
	app := cptest.StartWith(t, controlplane.Config{KubeconfigDir: kubeconfigDir(t, cs...)})
	gw, err := gwclient.NewForConfig(cs[0].Config)
	if err != nil {
		t.Fatal(err)
	}
	group, kind := gwapiv1.Group("multicluster.x-k8s.io"), gwapiv1.Kind("ServiceImport")
	port := gwapiv1.PortNumber(80)
	route := &gwapiv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "mesh", Name: "to-v2"}}
	route.Spec.ParentRefs = []gwapiv1.ParentReference{{Group: &group, Kind: &kind, Name: "api"}}
	route.Spec.Rules = []gwapiv1.GRPCRouteRule{{BackendRefs: []gwapiv1.GRPCBackendRef{{BackendRef: gwapiv1.BackendRef{
		BackendObjectReference: gwapiv1.BackendObjectReference{Group: &group, Kind: &kind, Name: "api-v2", Port: &port}}}}}}
	if _, err := gw.GatewayV1().GRPCRoutes("mesh").Create(ctx, route, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	key := mcs.ServiceKey{Namespace: "mesh", Name: "api"}
	target := func(want string) func() error {
		return func() error {
			for _, r := range app.Cache.Resources(controlplane.ViewName("m", translate.RoleClient), resourcev3.RouteType).Resources {
				if r.Name != translate.RouteName(key, 80) {
					continue
				}
				got := r.Message.(*routev3.RouteConfiguration).VirtualHosts[0].Routes[0].GetRoute().GetCluster()
				if got != want {
					return fmt.Errorf("routes to %s", got)
				}
				return nil
			}
			return fmt.Errorf("no route configuration")
		}
	}
	testkit.Eventually(t, "the route sends api's traffic to api-v2", target(translate.ClusterName(mcs.ServiceKey{Namespace: "mesh", Name: "api-v2"}, 80)))
	if err := gw.GatewayV1().GRPCRoutes("mesh").Delete(ctx, "to-v2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the default route is back", target(translate.ClusterName(key, 80)))
}
