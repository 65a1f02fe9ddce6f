package translate

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// ServiceOptions add to what Service translates.
type ServiceOptions struct {
	// Routes returns the mesh route rules (GAMMA) attached to a port of
	// the service in the view's member cluster, in precedence order; they
	// replace the port's default route for client views.
	Routes func(port int32) []*gatewayapi.RouteRule
	// Published reports whether a cluster is served in the view: a mesh
	// route never sends traffic to a cluster that is not (make before
	// break), and a backend whose cluster is missing gets no share.
	Published func(cluster string) bool
	// Import returns a service's import (session affinity of backends).
	Import func(mcs.ServiceKey) *mcs.Import
}

// meshRoute builds a client port's route configuration from its mesh
// route rules, in their order (gatewayapi.Build sorts them by precedence).
func meshRoute(name string, rules []*gatewayapi.RouteRule, o ServiceOptions) *routev3.RouteConfiguration {
	vh := &routev3.VirtualHost{Name: name, Domains: []string{"*"}}
	ro := routeOptions{
		grpc: true,
		cluster: func(b gatewayapi.Backend) string {
			c := backendCluster(b)
			if b.Kind != gatewayapi.BackendImport || (o.Published != nil && !o.Published(c)) {
				// Client views carry ServiceImport clusters only.
				return ""
			}
			return c
		},
		affinity: func(b gatewayapi.Backend) bool {
			if o.Import == nil {
				return false
			}
			imp := o.Import(b.Service)
			return imp != nil && imp.SessionAffinity == corev1.ServiceAffinityClientIP
		},
	}
	for _, rr := range rules {
		vh.Routes = append(vh.Routes, envoyRoute(rr, ro))
	}
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}
}
