package translate

import (
	"errors"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// validator is what protoc-gen-validate generates on every Envoy type.
type validator interface{ ValidateAll() error }

// Validate checks a resource before it is published: the
// protoc-gen-validate rules (ValidateAll), which do not look inside Any
// fields, so also every embedded config (HttpConnectionManager, router,
// protocol options), and gRPC's stricter rules, which every view must meet
// because gRPC NACKs what Envoy accepts (ARCHITECTURE.md, measured facts).
func Validate(m proto.Message, role Role) error { return validate(m, role, nil) }

// validate is Validate with the typed messages of the Anys a packer made.
func validate(m proto.Message, role Role, typed packer) error {
	var errs []error
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, err)
		}
	}
	switch r := m.(type) {
	case *listenerv3.Listener:
		errs = append(errs, validateListener(r, typed)...)
	case *clusterv3.Cluster:
		errs = append(errs, validateCluster(r, role)...)
	case *endpointv3.ClusterLoadAssignment:
		errs = append(errs, validateLoadAssignment(r)...)
	case *routev3.RouteConfiguration:
		errs = append(errs, validateRoutes(r)...)
	}
	return errors.Join(errs...)
}

// validateAny runs an embedded config's own rules: on the typed message
// it was packed from when typed has it, else unpacked.
func validateAny(what string, a *anypb.Any, typed packer) (proto.Message, error) {
	if a == nil {
		return nil, fmt.Errorf("%s: typed_config is required", what)
	}
	m, ok := typed[a]
	if !ok {
		var err error
		if m, err = a.UnmarshalNew(); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return m, fmt.Errorf("%s: %w", what, err)
		}
	}
	return m, nil
}

func validateListener(l *listenerv3.Listener, typed packer) []error {
	var errs []error
	if l.ApiListener != nil {
		m, err := validateAny("api_listener", l.ApiListener.ApiListener, typed)
		if err != nil {
			return []error{err}
		}
		hcm, ok := m.(*hcmv3.HttpConnectionManager)
		if !ok {
			return []error{fmt.Errorf("api_listener: %T is not an HttpConnectionManager", m)}
		}
		errs = append(errs, validateHCM("api_listener", hcm, typed)...)
		// gRPC reads routes over ADS (or inline) only.
		if rds := hcm.GetRds(); rds != nil && rds.GetConfigSource().GetAds() == nil {
			errs = append(errs, errors.New("api_listener: RDS must use the ADS config source"))
		}
		if hcm.GetRds() == nil && hcm.GetRouteConfig() == nil {
			errs = append(errs, errors.New("api_listener: needs RDS or an inline route configuration"))
		}
	}
	for i, fc := range l.FilterChains {
		for j, f := range fc.Filters {
			what := fmt.Sprintf("filter_chains[%d].filters[%d] %s", i, j, f.Name)
			m, err := validateAny(what, f.GetTypedConfig(), typed)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if hcm, ok := m.(*hcmv3.HttpConnectionManager); ok {
				errs = append(errs, validateHCM(what, hcm, typed)...)
			}
		}
	}
	return errs
}

func validateHCM(what string, hcm *hcmv3.HttpConnectionManager, typed packer) []error {
	var errs []error
	if len(hcm.HttpFilters) == 0 {
		return []error{fmt.Errorf("%s: http_filters must not be empty", what)}
	}
	for i, f := range hcm.HttpFilters {
		m, err := validateAny(fmt.Sprintf("%s: http_filters[%d] %s", what, i, f.Name), f.GetTypedConfig(), typed)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, isRouter := m.(*routerv3.Router)
		if last := i == len(hcm.HttpFilters)-1; last != isRouter {
			errs = append(errs, fmt.Errorf("%s: the router filter must be last, and only last", what))
		}
	}
	if rc := hcm.GetRouteConfig(); rc != nil {
		errs = append(errs, validateRoutes(rc)...)
	}
	return errs
}

func validateCluster(c *clusterv3.Cluster, role Role) []error {
	var errs []error
	for name, a := range c.TypedExtensionProtocolOptions {
		if _, err := validateAny("typed_extension_protocol_options "+name, a, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if role != RoleClient && role != RoleGateway {
		return errs
	}
	// gRPC NACKs everything but EDS over ADS and these policies; gateways
	// get the same clusters, so the rule holds for every view.
	if c.GetType() != clusterv3.Cluster_EDS {
		errs = append(errs, fmt.Errorf("cluster type %s: only EDS is served", c.GetType()))
	}
	if c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
		errs = append(errs, errors.New("eds_config must be the ADS config source"))
	}
	if !slices.Contains([]clusterv3.Cluster_LbPolicy{clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RING_HASH, clusterv3.Cluster_LEAST_REQUEST}, c.LbPolicy) {
		errs = append(errs, fmt.Errorf("lb_policy %s is not supported by gRPC", c.LbPolicy))
	}
	return errs
}

// validateLoadAssignment enforces what gRPC silently mishandles: a
// locality without a weight is dropped, and priorities must be contiguous
// from 0.
func validateLoadAssignment(cla *endpointv3.ClusterLoadAssignment) []error {
	var errs []error
	seen := map[uint32]bool{}
	for i, l := range cla.Endpoints {
		if l.Locality == nil {
			errs = append(errs, fmt.Errorf("endpoints[%d]: locality is required", i))
		}
		if l.GetLoadBalancingWeight().GetValue() < 1 {
			errs = append(errs, fmt.Errorf("endpoints[%d]: load_balancing_weight must be at least 1", i))
		}
		seen[l.Priority] = true
	}
	for p := range len(seen) {
		if !seen[uint32(p)] { //nolint:gosec // p < len(seen), itself bounded by the uint32 keys
			errs = append(errs, fmt.Errorf("priorities must be contiguous from 0: %d is missing", p))
			break
		}
	}
	return errs
}

func validateRoutes(rc *routev3.RouteConfiguration) []error {
	var errs []error
	domains := map[string]string{}
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			if other, dup := domains[d]; dup {
				errs = append(errs, fmt.Errorf("domain %q is in virtual hosts %s and %s", d, other, vh.Name))
			}
			domains[d] = vh.Name
		}
		for _, r := range vh.Routes {
			if a := r.GetRoute(); a != nil && a.GetCluster() == "" && a.GetWeightedClusters() == nil {
				errs = append(errs, fmt.Errorf("virtual host %s: a route names no cluster", vh.Name))
			}
		}
	}
	return errs
}
