package translate

import (
	"regexp"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/eastwest-dev/eastwest/pkg/gateway"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// ServiceOptions add to what Service translates.
type ServiceOptions struct {
	// Routes returns the mesh routes attached to a port of the service
	// in the view's member cluster (GAMMA); they replace the port's
	// default route for client views.
	Routes func(port int32) []gateway.MeshRoute
	// Published reports whether a cluster is served in the view: a mesh
	// route never sends traffic to a cluster that is not (make before
	// break), and a backend whose cluster is missing gets no share.
	Published func(cluster string) bool
	// Ports returns the ports of an imported service, to resolve a
	// backendRef without a port when the import has a single port.
	Ports func(mcs.ServiceKey) []int32
}

// meshRoute builds a client port's route configuration from its mesh
// routes, rules tried in the routes' order (oldest route first) and in
// each route's rule order. A rule with no backend served is left out, so
// its requests fail fast instead of waiting on a missing cluster.
func meshRoute(name string, routes []gateway.MeshRoute, o ServiceOptions) *routev3.RouteConfiguration {
	vh := &routev3.VirtualHost{Name: name, Domains: []string{"*"}}
	for _, r := range routes {
		for _, rule := range r.Rules {
			action := meshAction(rule, o)
			if action == nil {
				continue
			}
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []gateway.Match{{}}
			}
			for _, m := range matches {
				vh.Routes = append(vh.Routes, &routev3.Route{Match: meshMatch(m), Action: &routev3.Route_Route{Route: action}})
			}
		}
	}
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}
}

func meshAction(rule gateway.Rule, o ServiceOptions) *routev3.RouteAction {
	var clusters []*routev3.WeightedCluster_ClusterWeight
	for _, b := range rule.Backends {
		port := b.Port
		if port == 0 && o.Ports != nil {
			if ps := o.Ports(b.Service); len(ps) == 1 {
				port = ps[0]
			}
		}
		if port == 0 || b.Weight == 0 {
			continue
		}
		c := ClusterName(b.Service, port)
		if o.Published != nil && !o.Published(c) {
			continue
		}
		clusters = append(clusters, &routev3.WeightedCluster_ClusterWeight{Name: c, Weight: wrapperspb.UInt32(b.Weight)})
	}
	if len(clusters) == 0 {
		return nil
	}
	a := &routev3.RouteAction{}
	if len(clusters) == 1 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: clusters[0].Name}
	} else {
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: clusters}}
	}
	if rule.Timeout > 0 {
		// Envoy reads timeout; gRPC reads max_stream_duration.
		a.Timeout = durationpb.New(rule.Timeout)
		a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(rule.Timeout)}
	}
	return a
}

// meshMatch maps a rule match to the path and header matchers both Envoy
// and gRPC accept (prefix, exact path, safe regex, exact header values).
func meshMatch(m gateway.Match) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	switch {
	case m.GRPCService != "" && m.GRPCMethod != "":
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: "/" + m.GRPCService + "/" + m.GRPCMethod}
	case m.GRPCService != "":
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/" + m.GRPCService + "/"}
	case m.GRPCMethod != "":
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/[^/]+/" + regexp.QuoteMeta(m.GRPCMethod)}}
	case m.PathExact != "":
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: m.PathExact}
	case m.PathPrefix != "":
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: m.PathPrefix}
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{
			Name: h.Name,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Value},
			}},
		})
	}
	return rm
}
