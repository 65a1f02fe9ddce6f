// Package gateway reads Gateway API routes. This first part covers mesh
// routes (GAMMA, GEP-1426 and GEP-1748): an HTTPRoute or GRPCRoute whose
// parentRef is a ServiceImport (or a Service) shapes what proxyless gRPC
// clients get for that service: matches and weighted ServiceImport
// backends. Gateways, listeners, filters, ReferenceGrants and route status
// come next.
package gateway

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// MeshRoute is an HTTPRoute or GRPCRoute attached to services.
type MeshRoute struct {
	Member    string
	Kind      string
	Namespace string
	Name      string
	Created   time.Time
	Parents   []Parent
	Rules     []Rule
}

// Parent is a service a mesh route attaches to; Port 0 means every port.
type Parent struct {
	Service mcs.ServiceKey
	Port    int32
}

// Rule is one route rule: requests matching any match (or all requests,
// without matches) go to the backends by weight.
type Rule struct {
	Matches  []Match
	Backends []Backend
	// Timeout is the request timeout (HTTPRoute timeouts.request); zero
	// means none.
	Timeout time.Duration
}

// Match is one match of a rule; empty fields match everything.
type Match struct {
	PathExact, PathPrefix string
	// GRPCService and GRPCMethod match /<service>/<method>.
	GRPCService, GRPCMethod string
	Headers                 []Header
}

// Header is an exact header match.
type Header struct{ Name, Value string }

// Backend is a weighted ServiceImport port.
type Backend struct {
	Service mcs.ServiceKey
	Port    int32
	Weight  uint32
}

// Handles reports whether an object is a route this package reads.
func Handles(o metav1.Object) bool {
	switch o.(type) {
	case *gwapiv1.HTTPRoute, *gwapiv1.GRPCRoute:
		return true
	}
	return false
}

func parents(ns string, refs []gwapiv1.ParentReference) []Parent {
	var out []Parent
	for _, p := range refs {
		group, kind := "", ""
		if p.Group != nil {
			group = string(*p.Group)
		}
		if p.Kind != nil {
			kind = string(*p.Kind)
		}
		isImport := group == mcsv1b1.GroupName && kind == "ServiceImport"
		isService := group == "" && kind == "Service"
		if !isImport && !isService {
			continue // a Gateway parent: not a mesh route
		}
		key := mcs.ServiceKey{Namespace: ns, Name: string(p.Name)}
		if p.Namespace != nil {
			key.Namespace = string(*p.Namespace)
		}
		par := Parent{Service: key}
		if p.Port != nil {
			par.Port = *p.Port
		}
		out = append(out, par)
	}
	return out
}

func backend(ns string, ref gwapiv1.BackendRef) (Backend, error) {
	group, kind := "", "Service"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	if group != mcsv1b1.GroupName || kind != "ServiceImport" {
		return Backend{}, fmt.Errorf("backend %s %s: only ServiceImport backends are served to mesh clients so far", kind, ref.Name)
	}
	b := Backend{Service: mcs.ServiceKey{Namespace: ns, Name: string(ref.Name)}, Weight: 1}
	if ref.Namespace != nil {
		b.Service.Namespace = string(*ref.Namespace)
	}
	if ref.Port != nil {
		b.Port = *ref.Port
	}
	if ref.Weight != nil {
		if *ref.Weight < 0 {
			return Backend{}, fmt.Errorf("backend %s: negative weight", ref.Name)
		}
		b.Weight = uint32(*ref.Weight)
	}
	return b, nil
}

// FromGRPCRoute converts a GRPCRoute; ok is false when it has no service
// parent. Backends that cannot be served are reported in errs and left out.
func FromGRPCRoute(member string, r *gwapiv1.GRPCRoute) (MeshRoute, []error, bool) {
	m := MeshRoute{Member: member, Kind: "GRPCRoute", Namespace: r.Namespace, Name: r.Name, Created: r.CreationTimestamp.Time,
		Parents: parents(r.Namespace, r.Spec.ParentRefs)}
	if len(m.Parents) == 0 {
		return m, nil, false
	}
	var errs []error
	for _, rule := range r.Spec.Rules {
		var out Rule
		for _, mt := range rule.Matches {
			var match Match
			if mt.Method != nil {
				if mt.Method.Type != nil && *mt.Method.Type != gwapiv1.GRPCMethodMatchExact {
					errs = append(errs, fmt.Errorf("method match type %s: only Exact is served to mesh clients so far", *mt.Method.Type))
					continue
				}
				match.GRPCService, match.GRPCMethod = deref(mt.Method.Service), deref(mt.Method.Method)
			}
			for _, h := range mt.Headers {
				match.Headers = append(match.Headers, Header{Name: string(h.Name), Value: h.Value})
			}
			out.Matches = append(out.Matches, match)
		}
		refs := make([]gwapiv1.BackendRef, len(rule.BackendRefs))
		for i, br := range rule.BackendRefs {
			refs[i] = br.BackendRef
		}
		out.Backends, errs = backends(r.Namespace, refs, errs)
		m.Rules = append(m.Rules, out)
	}
	return m, errs, true
}

// backends converts a rule's backendRefs, reporting those it cannot serve.
func backends(ns string, refs []gwapiv1.BackendRef, errs []error) ([]Backend, []error) {
	var out []Backend
	for _, ref := range refs {
		b, err := backend(ns, ref)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, b)
	}
	return out, errs
}

// FromHTTPRoute converts an HTTPRoute, as FromGRPCRoute.
func FromHTTPRoute(member string, r *gwapiv1.HTTPRoute) (MeshRoute, []error, bool) {
	m := MeshRoute{Member: member, Kind: "HTTPRoute", Namespace: r.Namespace, Name: r.Name, Created: r.CreationTimestamp.Time,
		Parents: parents(r.Namespace, r.Spec.ParentRefs)}
	if len(m.Parents) == 0 {
		return m, nil, false
	}
	var errs []error
	for _, rule := range r.Spec.Rules {
		var out Rule
		for _, mt := range rule.Matches {
			var match Match
			if p := mt.Path; p != nil && p.Value != nil {
				switch deref(p.Type) {
				case gwapiv1.PathMatchExact:
					match.PathExact = *p.Value
				case gwapiv1.PathMatchPathPrefix, "":
					match.PathPrefix = *p.Value
				default:
					errs = append(errs, fmt.Errorf("path match type %s: not served to mesh clients so far", deref(p.Type)))
					continue
				}
			}
			for _, h := range mt.Headers {
				match.Headers = append(match.Headers, Header{Name: string(h.Name), Value: h.Value})
			}
			out.Matches = append(out.Matches, match)
		}
		refs := make([]gwapiv1.BackendRef, len(rule.BackendRefs))
		for i, br := range rule.BackendRefs {
			refs[i] = br.BackendRef
		}
		out.Backends, errs = backends(r.Namespace, refs, errs)
		if t := rule.Timeouts; t != nil && t.Request != nil {
			d, err := time.ParseDuration(string(*t.Request))
			if err != nil {
				errs = append(errs, fmt.Errorf("timeouts.request %q: %w", *t.Request, err))
			} else {
				out.Timeout = d
			}
		}
		m.Rules = append(m.Rules, out)
	}
	return m, errs, true
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

type routeKey struct {
	member, kind, namespace, name string
}

// Routes holds the mesh routes of every member cluster. Like mcs.Store it
// is owned by the writer's goroutine.
type Routes struct {
	routes map[routeKey]MeshRoute
}

// NewRoutes returns an empty set.
func NewRoutes() *Routes { return &Routes{routes: map[routeKey]MeshRoute{}} }

// Apply records an event and returns the services whose routes changed.
func (r *Routes) Apply(ev mcs.Event) ([]mcs.ServiceKey, []error) {
	var touched []mcs.ServiceKey
	touch := func(m MeshRoute) {
		for _, p := range m.Parents {
			touched = append(touched, p.Service)
		}
	}
	if ev.Op == mcs.OpLeave {
		for k, m := range r.routes {
			if k.member == ev.Member {
				touch(m)
				delete(r.routes, k)
			}
		}
		return touched, nil
	}
	var m MeshRoute
	var errs []error
	var ok bool
	switch o := ev.Object.(type) {
	case *gwapiv1.GRPCRoute:
		m, errs, ok = FromGRPCRoute(ev.Member, o)
	case *gwapiv1.HTTPRoute:
		m, errs, ok = FromHTTPRoute(ev.Member, o)
	default:
		return nil, []error{fmt.Errorf("unsupported object %T", ev.Object)}
	}
	k := routeKey{ev.Member, m.Kind, ev.Object.GetNamespace(), ev.Object.GetName()}
	if old, had := r.routes[k]; had {
		touch(old)
		delete(r.routes, k)
	}
	if ev.Op == mcs.OpUpsert && ok {
		r.routes[k] = m
		touch(m)
	}
	return touched, errs
}

// For returns the mesh routes of a member attached to a service port, the
// oldest first (ties by kind, namespace, name): the order in which their
// rules are tried.
func (r *Routes) For(member string, svc mcs.ServiceKey, port int32) []MeshRoute {
	var out []MeshRoute
	for k, m := range r.routes {
		if k.member != member {
			continue
		}
		for _, p := range m.Parents {
			if p.Service == svc && (p.Port == 0 || p.Port == port) {
				out = append(out, m)
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b MeshRoute) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Parents returns every service some mesh route attaches to.
func (r *Routes) Parents() []mcs.ServiceKey {
	seen := map[mcs.ServiceKey]bool{}
	for _, m := range r.routes {
		for _, p := range m.Parents {
			seen[p.Service] = true
		}
	}
	out := make([]mcs.ServiceKey, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.SortFunc(out, mcs.ServiceKey.Compare)
	return out
}
