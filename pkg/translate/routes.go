package translate

import (
	"math"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
)

// routeOptions say who reads a route: Envoy (Gateway API gateways) or a
// proxyless gRPC client, which takes a subset: no redirects, rewrites,
// header changes, mirrors or retries on HTTP codes (it ignores or NACKs
// them), and a weighted share to a missing cluster would make its RPCs
// hang instead of failing (ARCHITECTURE.md).
type routeOptions struct {
	grpc bool
	// cluster names a backend's cluster, "" when it is not served.
	cluster func(gatewayapi.Backend) string
	// affinity reports whether a backend's import asks for ClientIP
	// session affinity.
	affinity func(gatewayapi.Backend) bool
	// listenerPort is the Gateway listener's port, defaultPort its
	// protocol's well-known one (80, 443); 0 outside a Gateway.
	listenerPort, defaultPort uint32
}

// onPort is o for the routes of a Gateway listener on port, whose
// protocol's well-known port is def.
func (o routeOptions) onPort(port, def uint32) routeOptions {
	o.listenerPort, o.defaultPort = port, def
	return o
}

// envoyRoute translates one resolved route rule.
func envoyRoute(rr *gatewayapi.RouteRule, o routeOptions) *routev3.Route {
	r := &routev3.Route{Match: routeMatch(rr.Match, o.grpc)}
	a := rr.Action
	if a.Redirect != nil {
		if o.grpc {
			r.Action = directResponse(500)
			return r
		}
		r.Action = &routev3.Route_Redirect{Redirect: redirect(a.Redirect, o)}
		return r
	}
	ra := routeBackends(a, o)
	if ra == nil {
		// Gateway API: a rule whose backends are all invalid answers 500.
		// gRPC clients fail such RPCs at once (UNAVAILABLE: the route's
		// action is not a route).
		r.Action = directResponse(500)
		return r
	}
	routeTimeouts(ra, a, o.grpc)
	r.Action = &routev3.Route_Route{Route: ra}
	if o.grpc {
		return r
	}
	ra.RetryPolicy = routeRetry(a)
	ra.RequestMirrorPolicies = routeMirrors(a, o)
	routeRewrite(ra, a.Rewrite)
	r.RequestHeadersToAdd, r.RequestHeadersToRemove = headers(a.RequestHeaders)
	r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = headers(a.ResponseHeaders)
	return r
}

// routeBackends is a rule's backends as a route action: one cluster or
// weighted ones, an invalid backend's share answered 500 (gRPC drops it),
// session affinity's hash; nil when no backend is valid.
func routeBackends(a gatewayapi.Action, o routeOptions) *routev3.RouteAction {
	var clusters []*routev3.WeightedCluster_ClusterWeight
	invalid, affinity := false, false
	for _, b := range a.Backends {
		if b.Weight == 0 {
			continue
		}
		name := ""
		if b.Kind != gatewayapi.BackendInvalid {
			name = o.cluster(b)
			affinity = affinity || o.affinity(b)
		}
		if name == "" {
			if o.grpc {
				continue // the valid backends take the whole rule
			}
			name, invalid = InvalidBackendCluster, true
		}
		clusters = append(clusters, &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(b.Weight)})
	}
	if len(clusters) == 0 || (len(clusters) == 1 && clusters[0].Name == InvalidBackendCluster) {
		return nil
	}
	ra := &routev3.RouteAction{}
	if len(clusters) == 1 {
		ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: clusters[0].Name}
	} else {
		ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: clusters}}
	}
	if invalid {
		ra.ClusterNotFoundResponseCode = routev3.RouteAction_INTERNAL_SERVER_ERROR
	}
	if affinity {
		if o.grpc {
			ra.HashPolicy = channelHash()
		} else {
			ra.HashPolicy = sourceIPHash(true)
		}
	}
	return ra
}

// routeTimeouts sets the rule's timeouts.request and, without retries,
// timeouts.backendRequest (the one attempt's bound; with retries it is
// each attempt's per_try_timeout, see routeRetry). Found by a real
// Envoy: a per-try timeout is only read inside a retry policy. Envoy
// reads timeout; gRPC reads max_stream_duration.
func routeTimeouts(ra *routev3.RouteAction, a gatewayapi.Action, grpc bool) {
	timeout := a.Timeout
	retries := a.Retry != nil && a.Retry.Attempts > 0 && !grpc
	if bt := a.BackendTimeout; bt != nil && (timeout == nil || (!retries && *bt < *timeout)) {
		timeout = bt
	}
	if timeout == nil {
		return
	}
	ra.Timeout = durationpb.New(*timeout)
	if grpc {
		ra.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(*timeout)}
	}
}

// routeRetry is the rule's retry policy (Envoy only), or nil.
func routeRetry(a gatewayapi.Action) *routev3.RetryPolicy {
	rt := a.Retry
	if rt == nil || rt.Attempts <= 0 {
		return nil
	}
	p := &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream", NumRetries: wrapperspb.UInt32(uint32(min(rt.Attempts, math.MaxInt32)))} //nolint:gosec // bounded
	if len(rt.Codes) > 0 {
		p.RetryOn += ",retriable-status-codes"
		for _, c := range rt.Codes {
			p.RetriableStatusCodes = append(p.RetriableStatusCodes, uint32(max(0, c))) //nolint:gosec // HTTP codes
		}
	}
	if rt.Backoff > 0 {
		p.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(rt.Backoff)}
	}
	if a.BackendTimeout != nil {
		p.PerTryTimeout = durationpb.New(*a.BackendTimeout)
	}
	return p
}

// routeMirrors are the rule's request mirrors to valid, served backends.
func routeMirrors(a gatewayapi.Action, o routeOptions) []*routev3.RouteAction_RequestMirrorPolicy {
	var out []*routev3.RouteAction_RequestMirrorPolicy
	for _, m := range a.Mirrors {
		if m.Backend.Kind == gatewayapi.BackendInvalid {
			continue
		}
		name := o.cluster(m.Backend)
		if name == "" {
			continue
		}
		out = append(out, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster: name,
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
				Numerator: uint32(math.Round(m.Percent * 10000)), Denominator: typev3.FractionalPercent_MILLION,
			}},
		})
	}
	return out
}

// routeRewrite sets the rule's URL rewrite (host, full path or prefix).
func routeRewrite(ra *routev3.RouteAction, rw *gatewayapi.Rewrite) {
	if rw == nil {
		return
	}
	if rw.Hostname != "" {
		ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.Hostname}
	}
	switch {
	case rw.FullPath != nil:
		ra.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/.*$"}, Substitution: *rw.FullPath}
	case rw.PrefixPath != nil:
		prefix, sub := prefixRewrite(rw.MatchPrefix, *rw.PrefixPath)
		if prefix != "" {
			ra.PrefixRewrite = prefix
		} else {
			ra.RegexRewrite = sub
		}
	}
}

// prefixRewrite replaces a matched path prefix. Replacing with "/" must
// not leave a double slash (/foo/bar -> /bar), which prefix_rewrite would.
func prefixRewrite(match, replace string) (string, *matcherv3.RegexMatchAndSubstitute) {
	match = strings.TrimSuffix(match, "/")
	replace = strings.TrimSuffix(replace, "/")
	if replace == "" {
		return "", &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(match) + "/*"}, Substitution: "/"}
	}
	if match == "" {
		// The "/" prefix: keep the slash after the replacement.
		return "", &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/"}, Substitution: replace + "/"}
	}
	return replace, nil
}

func redirect(rd *gatewayapi.Redirect, o routeOptions) *routev3.RedirectAction {
	ra := &routev3.RedirectAction{HostRedirect: rd.Hostname}
	if rd.Scheme != "" {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.Scheme}
	}
	switch {
	case rd.Port > 0:
		ra.PortRedirect = uint32(rd.Port)
	case rd.Scheme == "" && o.listenerPort != o.defaultPort:
		// Neither scheme nor port: the spec's port is the listener's
		// (Envoy would keep the Host header's, none when the client
		// wrote none).
		ra.PortRedirect = o.listenerPort
	}
	switch {
	case rd.FullPath != nil:
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: *rd.FullPath}
	case rd.PrefixPath != nil:
		prefix, sub := prefixRewrite(rd.MatchPrefix, *rd.PrefixPath)
		if prefix != "" {
			ra.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: prefix}
		} else {
			ra.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: sub}
		}
	}
	switch rd.StatusCode {
	case 301:
		ra.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	case 303:
		ra.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		ra.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		ra.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		ra.ResponseCode = routev3.RedirectAction_FOUND
	}
	return ra
}

func directResponse(status uint32) *routev3.Route_DirectResponse {
	return &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: status}}
}

func headers(h gatewayapi.HeaderModifier) ([]*corev3.HeaderValueOption, []string) {
	var add []*corev3.HeaderValueOption
	for _, s := range h.Set {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: s.Name, Value: s.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	for _, s := range h.Add {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: s.Name, Value: s.Value},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	return add, h.Remove
}

// routeMatch maps a match. A PathPrefix matches whole path elements
// (/foo matches /foo and /foo/bar, not /foobar): Envoy's
// path_separated_prefix does that; gRPC does not know it, so gRPC
// clients get the equivalent regular expression.
func routeMatch(m gatewayapi.Match, grpc bool) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{}
	v := m.Path.Value
	switch m.Path.Type {
	case gatewayapi.PathExact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: v}
	case gatewayapi.PathRegex:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}
	default:
		trimmed := strings.TrimSuffix(v, "/")
		switch {
		case trimmed == "":
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		case grpc:
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: regexp.QuoteMeta(trimmed) + "(/.*)?"}}
		default:
			rm.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: trimmed}
		}
	}
	if m.Method != "" {
		rm.Headers = append(rm.Headers, headerMatcher(gatewayapi.ValueMatch{Name: ":method", Value: m.Method}))
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, headerMatcher(h))
	}
	for _, q := range m.Query {
		rm.QueryParameters = append(rm.QueryParameters, &routev3.QueryParameterMatcher{
			Name:                         q.Name,
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatch(q)},
		})
	}
	return rm
}

func headerMatcher(h gatewayapi.ValueMatch) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name:                 strings.ToLower(h.Name),
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatch(h)},
	}
}

func stringMatch(v gatewayapi.ValueMatch) *matcherv3.StringMatcher {
	if v.Regex {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v.Value}}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v.Value}}
}

// channelHash is a gRPC client route's hash policy for ClientIP affinity.
func channelHash() []*routev3.RouteAction_HashPolicy {
	return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{
		FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: "io.grpc.channel_id"},
	}}}
}

// backendCluster names a backend's cluster.
func backendCluster(b gatewayapi.Backend) string {
	switch b.Kind {
	case gatewayapi.BackendImport:
		return ClusterName(b.Service, b.Port)
	case gatewayapi.BackendService:
		return LocalClusterName(b.Service, b.Port)
	}
	return ""
}
