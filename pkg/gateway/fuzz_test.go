package gateway_test

import (
	"testing"

	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/gateway"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// fuzzBase is a member with a Gateway, an imported service and a local
// Service: every route the fuzzer writes has something to attach to and
// name.
const fuzzBase = `apiVersion: v1
kind: Namespace
metadata: {name: ns}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: eastwest}
spec: {controllerName: eastwest.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: eastwest
  listeners: [{name: web, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: ns}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {name: api, namespace: ns}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: ns, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.0.0.1]}]
`

// FuzzRouteTranslation feeds any route (HTTPRoute or GRPCRoute, as YAML)
// through decoding, the Gateway API build and translation for the
// Gateway's Envoy and the member's gRPC clients. Nothing may panic, and
// the translator must only make resources that pass validation: a route it
// cannot serve is reported in its status, never published broken.
func FuzzRouteTranslation(f *testing.F) {
	seeds := []string{
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n  - matches: [{path: {type: RegularExpression, value: '/a.*'}, headers: [{name: x, value: y}], queryParams: [{name: q, value: v}], method: GET}]\n    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]\n    backendRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: api, weight: 2}, {name: api, port: 8080}]\n",
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns}\nspec:\n  parentRefs: [{name: gw}, {group: multicluster.x-k8s.io, kind: ServiceImport, name: api}]\n  hostnames: ['*.x.io']\n  rules:\n  - matches: [{path: {value: /p}}]\n    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 8443, path: {type: ReplaceFullPath, replaceFullPath: /x}}}, {type: RequestMirror, requestMirror: {backendRef: {name: api, port: 8080}, fraction: {numerator: 1, denominator: 3}}}]\n    timeouts: {request: 1s, backendRequest: 500ms}\n    retry: {attempts: 2, codes: [500], backoff: 1s}\n",
		"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: ns}\nspec:\n  parentRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: api, port: 8080}, {name: gw, sectionName: web}]\n  rules:\n  - matches: [{method: {type: RegularExpression, service: 'a\\..*', method: M}, headers: [{type: RegularExpression, name: h, value: '.+'}]}]\n    backendRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: api, namespace: other}]\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	base, probs := source.Decode("base.yaml", []byte(fuzzBase))
	if len(probs) > 0 {
		f.Fatal(probs)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, _ := source.Decode("route.yaml", data)
		store, gws := mcs.NewStore(mcs.Options{}), gateway.NewStore()
		for _, o := range append(base, objs...) {
			ev := event.Event{Member: "east", Op: event.OpUpsert, Object: o.Obj}
			stores := event.StoresOf(o.Obj)
			if stores&event.Gateway != 0 {
				_ = gws.Apply(ev) // refused objects are reported, not fatal
			}
			if stores&event.MCS != 0 {
				_ = store.Apply(ev)
			}
		}
		store.Flush()
		state := store.Snapshot()
		res := gateway.Build(gws.Inputs("east"), lookup{state, store})
		var results []translate.Result
		for _, gw := range res.Gateways {
			v := translate.View{Cluster: "east", Role: translate.RoleGatewayAPI, Gateway: translate.GatewayAPIView(gw.Key)}
			results = append(results, translate.GatewayAPI(gw, v, translate.Backends{State: state, Local: func(k mcs.ServiceKey) (*mcs.Service, []*mcs.Slice) { return store.Local("east", k) }}))
		}
		for key, mesh := range res.Mesh {
			results = append(results, translate.ServiceWith(state.Services.Get(key), translate.View{Cluster: "east", Role: translate.RoleClient},
				translate.ServiceOptions{Routes: func(port int32) []*gateway.RouteRule { return gateway.MeshRules(mesh, port) }}))
		}
		for _, r := range results {
			for _, inv := range r.Invalid {
				t.Errorf("the translator made a resource that fails validation: %v", inv)
			}
		}
		for _, st := range res.Statuses {
			if st.GatewayClass == nil && st.Gateway == nil && st.Route == nil {
				t.Errorf("%s %s/%s: a status without content", st.Kind, st.Namespace, st.Name)
			}
		}
	})
}

// lookup reads imports from the merged state and Services from the
// member's inputs, as the controlplane's does.
type lookup struct {
	state *mcs.State
	store *mcs.Store
}

func (l lookup) Import(k mcs.ServiceKey) *mcs.Import {
	if st := l.state.Services.Get(k); st != nil {
		return st.Import
	}
	return nil
}

func (l lookup) Service(k mcs.ServiceKey) *mcs.Service {
	svc, _ := l.store.Local("east", k)
	return svc
}
