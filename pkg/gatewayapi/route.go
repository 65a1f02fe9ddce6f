package gatewayapi

import (
	"fmt"
	"math"
	"regexp"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// httpRoute compiles an HTTPRoute's rules: one RouteRule per match.
// A rule that cannot be served as written (an invalid regular expression,
// an unsupported value) is left out and reported (PartiallyInvalid); a
// rule with a filter eastwest does not implement answers 500, as the spec
// asks instead of skipping the filter.
func (b *builder) httpRoute(o *gwapiv1.HTTPRoute) *route {
	r := &route{key: RouteKey{Kind: kindHTTPRoute, Namespace: o.Namespace, Name: o.Name}, obj: o,
		parents: o.Spec.ParentRefs, hostnames: o.Spec.Hostnames, services: map[mcs.ServiceKey]bool{}}
	for i, rule := range o.Spec.Rules {
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwapiv1.HTTPRouteMatch{{}}
		}
		action, err := b.httpAction(r, i, rule)
		if err != nil {
			r.invalid = append(r.invalid, fmt.Sprintf("rule %d: %v", i, err))
			continue
		}
		var compiled []*RouteRule
		for _, m := range matches {
			match, err := httpMatch(m)
			if err == nil && action.Rewrite != nil {
				action.Rewrite.MatchPrefix, err = prefixFor(match, action.Rewrite.PrefixPath)
			}
			if err == nil && action.Redirect != nil {
				action.Redirect.MatchPrefix, err = prefixFor(match, action.Redirect.PrefixPath)
			}
			if err != nil {
				compiled = nil
				r.invalid = append(r.invalid, fmt.Sprintf("rule %d: %v", i, err))
				break
			}
			a := action
			a.Rewrite, a.Redirect = clonePtr(action.Rewrite), clonePtr(action.Redirect)
			compiled = append(compiled, &RouteRule{Route: r.key, Created: o.CreationTimestamp.Time, Rule: i, Match: match, Action: a})
		}
		r.rules = append(r.rules, compiled...)
	}
	return r
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// prefixFor checks that a ReplacePrefixMatch goes with a PathPrefix match
// and returns that prefix.
func prefixFor(m Match, replace *string) (string, error) {
	if replace == nil {
		return "", nil
	}
	if m.Path.Type != PathPrefix {
		return "", fmt.Errorf("ReplacePrefixMatch needs a PathPrefix match, not %s", m.Path.Type)
	}
	return m.Path.Value, nil
}

func httpMatch(m gwapiv1.HTTPRouteMatch) (Match, error) {
	out := Match{Path: PathMatch{Type: PathPrefix, Value: "/"}}
	if p := m.Path; p != nil {
		if p.Type != nil {
			out.Path.Type = *p.Type
		}
		if p.Value != nil {
			out.Path.Value = *p.Value
		}
		switch out.Path.Type {
		case PathExact, PathPrefix:
		case PathRegex:
			if _, err := regexp.Compile(out.Path.Value); err != nil {
				return out, fmt.Errorf("path regular expression %q: %w", out.Path.Value, err)
			}
		default:
			return out, fmt.Errorf("path match type %q is not supported", out.Path.Type)
		}
	}
	for _, h := range m.Headers {
		v, err := valueMatch(string(h.Name), h.Value, h.Type != nil && *h.Type == gwapiv1.HeaderMatchRegularExpression)
		if err != nil {
			return out, err
		}
		out.Headers = append(out.Headers, v)
	}
	for _, q := range m.QueryParams {
		v, err := valueMatch(string(q.Name), q.Value, q.Type != nil && *q.Type == gwapiv1.QueryParamMatchRegularExpression)
		if err != nil {
			return out, err
		}
		out.Query = append(out.Query, v)
	}
	if m.Method != nil {
		out.Method = string(*m.Method)
	}
	return out, nil
}

func valueMatch(name, value string, regex bool) (ValueMatch, error) {
	if regex {
		if _, err := regexp.Compile(value); err != nil {
			return ValueMatch{}, fmt.Errorf("%s regular expression %q: %w", name, value, err)
		}
	}
	return ValueMatch{Name: name, Value: value, Regex: regex}, nil
}

// httpAction compiles a rule's filters, backends, timeouts and retries.
func (b *builder) httpAction(r *route, i int, rule gwapiv1.HTTPRouteRule) (Action, error) {
	var a Action
	unsupported, err := b.filters(r, rule.Filters, &a)
	if err != nil {
		return a, err
	}
	if t := rule.Timeouts; t != nil {
		var err error
		if a.Timeout, err = duration("timeouts.request", t.Request); err != nil {
			return a, err
		}
		if a.BackendTimeout, err = duration("timeouts.backendRequest", t.BackendRequest); err != nil {
			return a, err
		}
	}
	if rt := rule.Retry; rt != nil {
		// Without attempts, one retry (Envoy's default); attempts 0
		// turns retries off.
		a.Retry = &Retry{Attempts: 1}
		if rt.Attempts != nil {
			a.Retry.Attempts = *rt.Attempts
		}
		for _, c := range rt.Codes {
			a.Retry.Codes = append(a.Retry.Codes, int(c))
		}
		if bo, err := duration("retry.backoff", rt.Backoff); err != nil {
			return a, err
		} else if bo != nil {
			a.Retry.Backoff = *bo
		}
	}
	for _, ref := range rule.BackendRefs {
		a.Backends = append(a.Backends, b.backend(r, ref.BackendRef))
		for _, f := range ref.Filters {
			// Per-backend filters: eastwest applies filters per rule.
			unsupported = "backendRefs[].filters " + string(f.Type)
		}
	}
	if unsupported != "" {
		a = r.answer500(i, unsupported)
	}
	return a, nil
}

// grpcFilter is a GRPCRoute filter as the HTTPRoute filter of the same
// type (the Gateway API defines them alike), so that one compiler serves
// both kinds of route.
func grpcFilter(f gwapiv1.GRPCRouteFilter) gwapiv1.HTTPRouteFilter {
	return gwapiv1.HTTPRouteFilter{Type: gwapiv1.HTTPRouteFilterType(f.Type), RequestHeaderModifier: f.RequestHeaderModifier,
		ResponseHeaderModifier: f.ResponseHeaderModifier, RequestMirror: f.RequestMirror, ExtensionRef: f.ExtensionRef}
}

// filters compiles a rule's filters into a, for HTTPRoutes and (through
// grpcFilter) GRPCRoutes; it returns the type of a filter eastwest does
// not support, if any (the rule then answers 500), and an error for a
// filter that is not well-formed.
func (b *builder) filters(r *route, fs []gwapiv1.HTTPRouteFilter, a *Action) (string, error) {
	unsupported := ""
	for _, f := range fs {
		switch f.Type {
		case gwapiv1.HTTPRouteFilterRequestHeaderModifier:
			a.RequestHeaders = headerModifier(f.RequestHeaderModifier)
		case gwapiv1.HTTPRouteFilterResponseHeaderModifier:
			a.ResponseHeaders = headerModifier(f.ResponseHeaderModifier)
		case gwapiv1.HTTPRouteFilterRequestRedirect:
			if f.RequestRedirect == nil {
				return "", fmt.Errorf("RequestRedirect filter without requestRedirect")
			}
			rr := f.RequestRedirect
			a.Redirect = &Redirect{Scheme: deref(rr.Scheme), Hostname: string(deref(rr.Hostname)), Port: int32(deref(rr.Port)), StatusCode: deref(rr.StatusCode)}
			if a.Redirect.StatusCode == 0 {
				a.Redirect.StatusCode = 302
			}
			a.Redirect.FullPath, a.Redirect.PrefixPath = pathModifier(rr.Path)
		case gwapiv1.HTTPRouteFilterURLRewrite:
			if f.URLRewrite == nil {
				return "", fmt.Errorf("URLRewrite filter without urlRewrite")
			}
			a.Rewrite = &Rewrite{Hostname: string(deref(f.URLRewrite.Hostname))}
			a.Rewrite.FullPath, a.Rewrite.PrefixPath = pathModifier(f.URLRewrite.Path)
		case gwapiv1.HTTPRouteFilterRequestMirror:
			if f.RequestMirror == nil {
				return "", fmt.Errorf("RequestMirror filter without requestMirror")
			}
			a.Mirrors = append(a.Mirrors, b.mirror(r, f.RequestMirror))
		default:
			unsupported = string(f.Type)
		}
	}
	if a.Redirect != nil && a.Rewrite != nil {
		return "", fmt.Errorf("RequestRedirect and URLRewrite cannot be combined")
	}
	return unsupported, nil
}

func pathModifier(p *gwapiv1.HTTPPathModifier) (full, prefix *string) {
	if p == nil {
		return nil, nil
	}
	switch p.Type {
	case gwapiv1.FullPathHTTPPathModifier:
		v := deref(p.ReplaceFullPath)
		return &v, nil
	case gwapiv1.PrefixMatchHTTPPathModifier:
		v := deref(p.ReplacePrefixMatch)
		return nil, &v
	}
	return nil, nil
}

func headerModifier(f *gwapiv1.HTTPHeaderFilter) HeaderModifier {
	var h HeaderModifier
	if f == nil {
		return h
	}
	for _, s := range f.Set {
		h.Set = append(h.Set, Header{Name: string(s.Name), Value: s.Value})
	}
	for _, s := range f.Add {
		h.Add = append(h.Add, Header{Name: string(s.Name), Value: s.Value})
	}
	h.Remove = append(h.Remove, f.Remove...)
	return h
}

func duration(field string, d *gwapiv1.Duration) (*time.Duration, error) {
	if d == nil {
		return nil, nil
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil || v < 0 {
		return nil, fmt.Errorf("%s %q is not a Gateway API duration", field, *d)
	}
	return &v, nil
}

func (b *builder) mirror(r *route, m *gwapiv1.HTTPRequestMirrorFilter) Mirror {
	be := b.backend(r, gwapiv1.BackendRef{BackendObjectReference: m.BackendRef})
	pct := 100.0
	switch {
	case m.Percent != nil:
		pct = float64(*m.Percent)
	case m.Fraction != nil && m.Fraction.Denominator != nil && *m.Fraction.Denominator > 0:
		pct = 100 * float64(m.Fraction.Numerator) / float64(*m.Fraction.Denominator)
	case m.Fraction != nil:
		pct = float64(m.Fraction.Numerator)
	}
	return Mirror{Backend: be, Percent: math.Min(100, math.Max(0, pct))}
}

// grpcRoute compiles a GRPCRoute; its method matches become path matches
// (/<service>/<method>) so both route kinds share one precedence order.
func (b *builder) grpcRoute(o *gwapiv1.GRPCRoute) *route {
	r := &route{key: RouteKey{Kind: kindGRPCRoute, Namespace: o.Namespace, Name: o.Name}, obj: o,
		parents: o.Spec.ParentRefs, hostnames: o.Spec.Hostnames, services: map[mcs.ServiceKey]bool{}}
	for i, rule := range o.Spec.Rules {
		var a Action
		fs := make([]gwapiv1.HTTPRouteFilter, len(rule.Filters))
		for j, f := range rule.Filters {
			fs[j] = grpcFilter(f)
		}
		unsupported, err := b.filters(r, fs, &a)
		if err != nil {
			r.invalid = append(r.invalid, fmt.Sprintf("rule %d: %v", i, err))
			continue
		}
		for _, ref := range rule.BackendRefs {
			a.Backends = append(a.Backends, b.backend(r, ref.BackendRef))
			for _, f := range ref.Filters {
				// Per-backend filters: eastwest applies filters per rule.
				unsupported = "backendRefs[].filters " + string(f.Type)
			}
		}
		if unsupported != "" {
			a = r.answer500(i, unsupported)
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwapiv1.GRPCRouteMatch{{}}
		}
		var compiled []*RouteRule
		for _, m := range matches {
			match, err := grpcMatch(m)
			if err != nil {
				compiled = nil
				r.invalid = append(r.invalid, fmt.Sprintf("rule %d: %v", i, err))
				break
			}
			compiled = append(compiled, &RouteRule{Route: r.key, Created: o.CreationTimestamp.Time, Rule: i, Match: match, Action: a})
		}
		r.rules = append(r.rules, compiled...)
	}
	return r
}

func grpcMatch(m gwapiv1.GRPCRouteMatch) (Match, error) {
	out := Match{Path: PathMatch{Type: PathPrefix, Value: "/"}}
	if mm := m.Method; mm != nil {
		svc, method := deref(mm.Service), deref(mm.Method)
		regex := mm.Type != nil && *mm.Type == gwapiv1.GRPCMethodMatchRegularExpression
		switch {
		case regex:
			s, me := svc, method
			if s == "" {
				s = "[^/]+"
			}
			if me == "" {
				me = "[^/]+"
			}
			out.Path = PathMatch{Type: PathRegex, Value: "/" + s + "/" + me}
			if _, err := regexp.Compile(out.Path.Value); err != nil {
				return out, fmt.Errorf("method regular expression: %w", err)
			}
		case svc != "" && method != "":
			out.Path = PathMatch{Type: PathExact, Value: "/" + svc + "/" + method}
		case svc != "":
			out.Path = PathMatch{Type: PathPrefix, Value: "/" + svc + "/"}
		case method != "":
			out.Path = PathMatch{Type: PathRegex, Value: "/[^/]+/" + regexp.QuoteMeta(method)}
		}
	}
	for _, h := range m.Headers {
		v, err := valueMatch(string(h.Name), h.Value, h.Type != nil && *h.Type == gwapiv1.GRPCHeaderMatchRegularExpression)
		if err != nil {
			return out, err
		}
		out.Headers = append(out.Headers, v)
	}
	return out, nil
}

// backend resolves a backendRef (Gateway API "BackendRef" and GEP-1748):
// a Service of the route's own cluster, or a ServiceImport of the
// ClusterSet; another namespace needs a ReferenceGrant there. A backend
// that cannot be resolved is Invalid (its share answers 500) and sets the
// route's ResolvedRefs condition.
func (b *builder) backend(r *route, ref gwapiv1.BackendRef) Backend {
	group, kind := string(deref(ref.Group)), kindService
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	be := Backend{Service: mcs.ServiceKey{Namespace: r.key.Namespace, Name: string(ref.Name)}, Weight: 1, Port: deref(ref.Port)}
	if ref.Namespace != nil {
		be.Service.Namespace = string(*ref.Namespace)
	}
	if ref.Weight != nil {
		be.Weight = uint32(max(0, *ref.Weight))
	}
	fail := func(reason gwapiv1.RouteConditionReason, format string, args ...any) Backend {
		be.Kind, be.Reason = BackendInvalid, fmt.Sprintf(format, args...)
		if r.refReason == "" {
			r.refReason = string(reason)
		}
		r.refErrs = append(r.refErrs, be.Reason)
		return be
	}
	switch {
	case group == "" && kind == kindService:
		be.Kind = BackendService
	case group == mcsv1b1.GroupName && kind == kindServiceImport:
		be.Kind = BackendImport
	default:
		return fail(gwapiv1.RouteReasonInvalidKind, "backendRef %s/%s %s: only Services and ServiceImports are supported", group, kind, ref.Name)
	}
	b.res.Refs[be.Service] = true
	r.services[be.Service] = true
	if be.Service.Namespace != r.key.Namespace && !b.granted(gwapiv1.GroupName, r.key.Kind, r.key.Namespace, group, kind, typesName(be.Service)) {
		return fail(gwapiv1.RouteReasonRefNotPermitted, "backendRef %s %s: no ReferenceGrant in %s allows %ss from %s", kind, be.Service, be.Service.Namespace, r.key.Kind, r.key.Namespace)
	}
	if be.Kind == BackendService {
		svc := b.look.Service(be.Service)
		if svc == nil {
			return fail(gwapiv1.RouteReasonBackendNotFound, "Service %s not found in this cluster", be.Service)
		}
		if be.Port == 0 {
			return fail(gwapiv1.RouteReasonBackendNotFound, "backendRef Service %s needs a port", be.Service)
		}
		for _, p := range svc.Ports {
			if p.Port == be.Port && p.Protocol == corev1.ProtocolTCP {
				return be
			}
		}
		return fail(gwapiv1.RouteReasonBackendNotFound, "Service %s has no TCP port %d", be.Service, be.Port)
	}
	imp := b.look.Import(be.Service)
	if imp == nil {
		return fail(gwapiv1.RouteReasonBackendNotFound, "ServiceImport %s not found: no cluster validly exports it", be.Service)
	}
	if be.Port == 0 {
		if len(imp.Ports) != 1 {
			return fail(gwapiv1.RouteReasonBackendNotFound, "backendRef ServiceImport %s needs a port: the import has %d", be.Service, len(imp.Ports))
		}
		be.Port = imp.Ports[0].Port
	}
	for _, p := range imp.Ports {
		if p.Port == be.Port && p.Protocol == corev1.ProtocolTCP {
			return be
		}
	}
	return fail(gwapiv1.RouteReasonBackendNotFound, "ServiceImport %s has no TCP port %d", be.Service, be.Port)
}

func typesName(k mcs.ServiceKey) types.NamespacedName {
	return types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
}

// answer500 is the action of a rule with a filter eastwest does not
// implement: the spec forbids skipping the filter, so the rule answers 500,
// and the route reports the rule as invalid (PartiallyInvalid).
func (r *route) answer500(rule int, filter string) Action {
	r.invalid = append(r.invalid, fmt.Sprintf("rule %d: filter %s is not supported: the rule answers 500", rule, filter))
	return Action{Backends: []Backend{{Kind: BackendInvalid, Weight: 1, Reason: "unsupported filter " + filter}}}
}
