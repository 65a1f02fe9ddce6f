package assemble_test

import (
	"slices"
	"testing"

	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/pkg/assemble"
	"github.com/eastwest-dev/eastwest/pkg/event"
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
` + fixture.GatewayClassYAML + `apiVersion: gateway.networking.k8s.io/v1
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
// through decoding and the Assembler, as serve does: the stores, the
// Gateway API build and the translation of every view (the Gateway's
// Envoy, the member's gRPC clients and gateways). Nothing may panic, the
// Gateway keeps its view whatever the route says, and the translator must
// only make resources that pass validation: a route it cannot serve is
// reported in its status, never published broken.
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
		a := assemble.New(assemble.Options{})
		_ = a.Apply(event.Event{Member: "east", Op: event.OpJoin})
		for _, o := range append(base, objs...) {
			_ = a.Apply(event.Event{Member: "east", Op: event.OpUpsert, Object: o.Obj}) // refused objects are reported, not fatal
		}
		a.Flush()
		if !slices.ContainsFunc(a.Views(), func(v translate.View) bool { return v.Role == translate.RoleGatewayAPI }) {
			t.Errorf("the Gateway gw has no view: views %v", a.Views())
		}
		for view, list := range a.Invalid() {
			for _, inv := range list {
				t.Errorf("%s: the translator made a resource that fails validation: %v", view, inv)
			}
		}
		for _, st := range a.Statuses("east") {
			if st.GatewayClass == nil && st.Gateway == nil && st.Route == nil && st.Parameters == nil {
				t.Errorf("%s %s/%s: a status without content", st.Kind, st.Namespace, st.Name)
			}
		}
	})
}
