package gateway

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

func grpcRoute(name string, age time.Duration, parentKind string, backends ...string) *gwapiv1.GRPCRoute {
	group := gwapiv1.Group("multicluster.x-k8s.io")
	if parentKind == "Service" {
		group = ""
	}
	kind := gwapiv1.Kind(parentKind)
	r := &gwapiv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.NewTime(time.Unix(0, 0).Add(age))}}
	r.Spec.ParentRefs = []gwapiv1.ParentReference{{Group: &group, Kind: &kind, Name: "api"}}
	var rule gwapiv1.GRPCRouteRule
	for _, b := range backends {
		g, k := gwapiv1.Group("multicluster.x-k8s.io"), gwapiv1.Kind("ServiceImport")
		if b == "svc" {
			g, k = "", "Service"
		}
		rule.BackendRefs = append(rule.BackendRefs, gwapiv1.GRPCBackendRef{BackendRef: gwapiv1.BackendRef{
			BackendObjectReference: gwapiv1.BackendObjectReference{Group: &g, Kind: &k, Name: gwapiv1.ObjectName(b)}}})
	}
	r.Spec.Rules = []gwapiv1.GRPCRouteRule{rule}
	return r
}

// Mesh routes attach to ServiceImports and Services (not Gateways), apply
// to their own member only, are tried oldest first, report backends they
// cannot serve, and go with their member.
func TestRoutes(t *testing.T) {
	rs := NewRoutes()
	key := mcs.ServiceKey{Namespace: "ns", Name: "api"}
	apply := func(member string, r *gwapiv1.GRPCRoute) []error {
		t.Helper()
		touched, errs := rs.Apply(mcs.Event{Member: member, Op: mcs.OpUpsert, Object: r})
		if len(touched) == 0 || touched[0] != key {
			t.Fatalf("touched %v", touched)
		}
		return errs
	}
	apply("a", grpcRoute("newer", time.Hour, "ServiceImport", "v1"))
	apply("a", grpcRoute("older", 0, "Service", "v2"))
	if errs := apply("a", grpcRoute("with-service-backend", 2*time.Hour, "ServiceImport", "svc")); len(errs) != 1 {
		t.Errorf("a Service backend was not reported: %v", errs)
	}
	apply("b", grpcRoute("elsewhere", 0, "ServiceImport", "v1"))
	got := rs.For("a", key, 9000)
	if len(got) != 3 || got[0].Name != "older" || got[1].Name != "newer" {
		t.Fatalf("routes for a: %+v", got)
	}
	if len(got[2].Rules[0].Backends) != 0 {
		t.Errorf("an unservable backend was kept: %+v", got[2].Rules)
	}
	gw := gwapiv1.Kind("Gateway")
	notMesh := grpcRoute("to-gateway", 0, "ServiceImport", "v1")
	notMesh.Spec.ParentRefs[0].Kind, notMesh.Spec.ParentRefs[0].Group = &gw, nil
	if touched, _ := rs.Apply(mcs.Event{Member: "a", Op: mcs.OpUpsert, Object: notMesh}); len(touched) != 0 || len(rs.For("a", key, 9000)) != 3 {
		t.Error("a route to a Gateway was taken as a mesh route")
	}
	rs.Apply(mcs.Event{Member: "a", Op: mcs.OpLeave})
	if len(rs.For("a", key, 9000)) != 0 || len(rs.For("b", key, 9000)) != 1 {
		t.Error("leaving did not remove exactly a's routes")
	}
}
