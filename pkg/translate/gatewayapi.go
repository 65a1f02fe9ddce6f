package translate

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// RoleGatewayAPI is an Envoy implementing one Gateway API Gateway
// (node.metadata.gateway names it).
const RoleGatewayAPI Role = "gateway-api"

// Backends is what a Gateway's translation reads of the ClusterSet.
type Backends struct {
	// State holds the imports and their endpoints.
	State *mcs.State
	// Local returns a Service of the view's own member and its
	// EndpointSlices (backendRefs of kind Service).
	Local func(mcs.ServiceKey) (*mcs.Service, []*mcs.Slice)
}

// GatewayBackends returns the clusters and endpoints of a Gateway's
// backends (and mirrors), by service, for the services only accepts (all
// when nil). A change to a backend's endpoints costs that backend's
// resources, not the Gateway's.
func GatewayBackends(gw *gatewayapi.Gateway, v View, be Backends, only func(mcs.ServiceKey) bool) map[mcs.ServiceKey]Result {
	out := map[mcs.ServiceKey]Result{}
	done := map[string]bool{}
	for _, b := range gatewayBackends(gw, only) {
		name := backendCluster(b)
		if done[name] {
			continue
		}
		done[name] = true
		r := out[b.Service]
		if c, cla := backendResources(name, b, v, be); c != nil {
			if r.add(v, resourcev3.ClusterType, name, c) {
				r.add(v, resourcev3.EndpointType, name, cla)
			} else {
				r.Invalid = append(r.Invalid, Invalid{resourcev3.EndpointType, name, fmt.Errorf("not published: cluster %s failed validation", name)})
			}
		}
		r.sort()
		out[b.Service] = r
	}
	return out
}

// GatewayListeners returns a Gateway's listeners, route configurations
// and certificates; published says which backend clusters the view
// serves (a backend whose cluster is not gets 500s).
func GatewayListeners(gw *gatewayapi.Gateway, v View, be Backends, published func(cluster string) bool) Result {
	var r Result
	ro := routeOptions{
		cluster: func(b gatewayapi.Backend) string {
			if n := backendCluster(b); published(n) {
				return n
			}
			return ""
		},
		affinity: func(b gatewayapi.Backend) bool { return backendAffinity(b, be) },
	}
	for _, name := range slices.SortedFunc(maps.Keys(gw.Secrets), func(a, b types.NamespacedName) int { return cmp.Compare(a.String(), b.String()) }) {
		cert := gw.Secrets[name]
		r.add(v, resourcev3.SecretType, SecretName(name), &tlsv3.Secret{
			Name: SecretName(name),
			Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: cert.Chain}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: cert.Key}},
			}},
		})
	}
	for _, p := range gw.Ports {
		pk := packer{}
		lis := &listenerv3.Listener{
			Name: GatewayAPIListenerName(gw.Key, p.Port),
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address:       v.listenAddress(),
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p.Port)}, //nolint:gosec // a PortNumber is 1-65535
			}}},
		}
		if p.Protocol == gwapiv1.HTTPProtocolType {
			rc := GatewayAPIRouteName(gw.Key, p.Port, "")
			lis.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(lis.Name, rc, v, pk)}}}
			r.add(v, resourcev3.RouteType, rc, hostRoutes(rc, p.Listeners, ro.onPort(uint32(p.Port), 80))) //nolint:gosec // a PortNumber is 1-65535
		} else {
			lis.ListenerFilters = []*listenerv3.ListenerFilter{{
				Name:       "envoy.filters.listener.tls_inspector",
				ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
			}}
			for _, l := range p.Listeners {
				rc := GatewayAPIRouteName(gw.Key, p.Port, l.Name)
				fc := &listenerv3.FilterChain{
					Name:            l.Name,
					Filters:         []*listenerv3.Filter{hcmFilter(lis.Name, rc, v, pk)},
					TransportSocket: downstreamTLS(l.Certificates),
				}
				if l.Hostname != "" {
					fc.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{l.Hostname}}
				}
				lis.FilterChains = append(lis.FilterChains, fc)
				r.add(v, resourcev3.RouteType, rc, hostRoutes(rc, []*gatewayapi.Listener{l}, ro.onPort(uint32(p.Port), 443))) //nolint:gosec // a PortNumber is 1-65535
			}
		}
		r.addPacked(v, resourcev3.ListenerType, lis.Name, lis, pk)
	}
	r.sort()
	return r
}

// hostRoutes makes one virtual host per hostname of the listeners (the
// listeners sharing an HTTP port share its route configuration), rules in
// precedence order.
func hostRoutes(name string, ls []*gatewayapi.Listener, ro routeOptions) *routev3.RouteConfiguration {
	hosts := map[string][]*gatewayapi.RouteRule{}
	for _, l := range ls {
		for _, h := range l.Hosts {
			hosts[h.Hostname] = append(hosts[h.Hostname], h.Routes...)
		}
	}
	// Gateway API hostnames never carry a port; a Host header may. It is
	// matched without it and sent upstream as the client wrote it.
	rc := &routev3.RouteConfiguration{Name: name, IgnorePortInHostMatching: true}
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		rules := hosts[h]
		if len(ls) > 1 {
			gatewayapi.SortRules(rules)
		}
		vh := &routev3.VirtualHost{Name: GatewayAPIVirtualHostName(h), Domains: []string{h}}
		for _, rr := range rules {
			vh.Routes = append(vh.Routes, envoyRoute(rr, ro))
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc
}

func hcmFilter(listener, route string, v View, p packer) *listenerv3.Filter {
	hcm := httpConnectionManager(listener, route, p)
	hcm.AccessLog = trafficLog(v, p)
	// A Gateway is an edge: Envoy's edge-proxy recommendations. The
	// client's address is the peer's (not a forwarded header), paths are
	// normalized before matching (so /a/../admin cannot dodge a rule),
	// headers with underscores (ambiguous with dashes for many backends)
	// are refused, and slow clients cannot hold streams forever.
	hcm.UseRemoteAddress = wrapperspb.Bool(true)
	hcm.NormalizePath = wrapperspb.Bool(true)
	hcm.MergeSlashes = true
	hcm.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{
		HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_REJECT_REQUEST,
		IdleTimeout:                  durationpb.New(time.Hour),
	}
	hcm.RequestHeadersTimeout = durationpb.New(10 * time.Second)
	hcm.StreamIdleTimeout = durationpb.New(5 * time.Minute)
	return &listenerv3.Filter{
		Name:       "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: p.any(hcm)},
	}
}

// downstreamTLS terminates TLS with certificates fetched over SDS on the
// ADS stream: key material never sits in a listener (config dumps of
// listeners stay free of secrets).
func downstreamTLS(certs []types.NamespacedName) *corev3.TransportSocket {
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols: []string{"h2", "http/1.1"},
	}}
	for _, c := range certs {
		ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = append(ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs,
			&tlsv3.SdsSecretConfig{Name: SecretName(c), SdsConfig: adsSource()})
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}

// gatewayBackends lists the backends (and mirrors) a Gateway's rules use,
// of the services only accepts (all when nil).
func gatewayBackends(gw *gatewayapi.Gateway, only func(mcs.ServiceKey) bool) []gatewayapi.Backend {
	var out []gatewayapi.Backend
	use := func(b gatewayapi.Backend) bool {
		return b.Kind != gatewayapi.BackendInvalid && (only == nil || only(b.Service))
	}
	for _, p := range gw.Ports {
		for _, l := range p.Listeners {
			for _, h := range l.Hosts {
				for _, rr := range h.Routes {
					for _, b := range rr.Action.Backends {
						if use(b) {
							out = append(out, b)
						}
					}
					for _, m := range rr.Action.Mirrors {
						if use(m.Backend) {
							out = append(out, m.Backend)
						}
					}
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b gatewayapi.Backend) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), a.Service.Compare(b.Service), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// backendResources makes a backend's cluster and endpoints: a
// ServiceImport port as every view sees it (the view's cluster first,
// failover to the others); a local Service port with its own cluster's
// endpoints only. It returns nils when the backend is gone.
func backendResources(name string, b gatewayapi.Backend, v View, be Backends) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	gv := View{Cluster: v.Cluster, Role: RoleGateway}
	switch b.Kind {
	case gatewayapi.BackendImport:
		st := be.State.Services.Get(b.Service)
		if st == nil || st.Import == nil {
			return nil, nil
		}
		for _, p := range ServedPorts(st) {
			if p.Port == b.Port {
				aff := st.Import.SessionAffinity == corev1.ServiceAffinityClientIP
				// A Gateway's Envoy does not tunnel: members on other
				// networks are left out (reach).
				return cluster(name, b.Service, p, gv, aff), loadAssignment(name, st, p, v, false)
			}
		}
	case gatewayapi.BackendService:
		if be.Local == nil {
			return nil, nil
		}
		svc, ss := be.Local(b.Service)
		if svc == nil {
			return nil, nil
		}
		for _, sp := range svc.Ports {
			if sp.Port != b.Port || sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			// The same locality rules as imports, with the view's own
			// cluster as the only one.
			st := &mcs.ServiceState{Key: b.Service, Backends: []mcs.ClusterBackend{{Cluster: v.Cluster, Ports: svc.Ports, Slices: ss}}}
			p := &mcs.ImportPort{ServicePort: mcsv1b1.ServicePort{Name: sp.Name, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol, Port: sp.Port}, Clusters: []mcs.ClusterID{v.Cluster}}
			aff := svc.SessionAffinity == corev1.ServiceAffinityClientIP
			return cluster(name, b.Service, p, gv, aff), loadAssignment(name, st, p, v, true)
		}
	}
	return nil, nil
}

// backendAffinity reports whether a backend asks for ClientIP session
// affinity (its import's, or its local Service's).
func backendAffinity(b gatewayapi.Backend, be Backends) bool {
	switch b.Kind {
	case gatewayapi.BackendImport:
		st := be.State.Services.Get(b.Service)
		return st != nil && st.Import != nil && st.Import.SessionAffinity == corev1.ServiceAffinityClientIP
	case gatewayapi.BackendService:
		if be.Local != nil {
			svc, _ := be.Local(b.Service)
			return svc != nil && svc.SessionAffinity == corev1.ServiceAffinityClientIP
		}
	}
	return false
}
