package translate

import (
	"cmp"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	previousprioritiesv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"

	"github.com/eastwest-dev/eastwest/pkg/envoystats"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/resource"
)

// Role is what kind of xDS client a node is (node.metadata.role).
type Role string

// The roles a node can declare.
const (
	// RoleClient is a proxyless gRPC client: API listeners per service port.
	RoleClient Role = "client"
	// RoleGateway is an east-west Envoy gateway: every cluster and a
	// Host-routed HTTP listener.
	RoleGateway Role = "gateway"
)

// DefaultGatewayPort is the port of a gateway's HTTP listener.
const DefaultGatewayPort uint32 = 15080

// View is what one kind of client in one member cluster sees: the same
// ClusterSet state gives each view its own endpoint priorities (the
// client's own cluster first) and listeners.
type View struct {
	Cluster mcs.ClusterID
	Role    Role
	// GatewayPort is the port of the gateway HTTP listener (gateways only).
	GatewayPort uint32
	// Gateway is the <namespace>/<name> of the Gateway API Gateway a
	// gateway-api view implements.
	Gateway string
	// TunnelPort is the port of the gateway's tunnel listener (gateways
	// only; 0: mcs.DefaultTunnelPort).
	TunnelPort uint32
	// Net is how the members reach each other (nil: a flat network).
	Net *Topology
	// ListenAddress is the address the Envoys' listeners bind (gateway
	// and gateway-api views; "": every address, 0.0.0.0, as in a pod).
	ListenAddress string
	// Zone is the Kubernetes zone of the view's clients (client and
	// gateway views; "": any zone). It orders the view's own member's
	// endpoints for services whose trafficDistribution prefers the
	// client's zone: the endpoints for that zone first.
	Zone string
}

// listenAddress is the address a view's listeners bind.
func (v View) listenAddress() string {
	if v.ListenAddress == "" {
		return "0.0.0.0"
	}
	return v.ListenAddress
}

// String names the view in the cache: <cluster>/<role>, and for
// gateway-api views <cluster>/gateway-api/<namespace>/<name>.
func (v View) String() string {
	if v.Role == RoleGatewayAPI {
		return string(v.Cluster) + "/" + string(v.Role) + "/" + v.Gateway
	}
	if v.Zone != "" {
		return string(v.Cluster) + "/" + string(v.Role) + ZoneSeparator + v.Zone
	}
	return string(v.Cluster) + "/" + string(v.Role)
}

// ZoneSeparator ends a view's name before its zone: <cluster>/<role>@<zone>.
const ZoneSeparator = "@"

// Base is the view without its zone.
func (v View) Base() View {
	v.Zone = ""
	return v
}

// Resource is one named Envoy resource of one xDS type.
type Resource = resource.Resource

// Invalid is a resource that failed validation: it is not returned, and
// whoever serves the previous version of it keeps serving that.
type Invalid struct {
	Type string
	Name string
	Err  error
}

func (i Invalid) Error() string { return fmt.Sprintf("%s %s: %v", TypeName(i.Type), i.Name, i.Err) }

// Result is the outcome of translating one service or the gateway routes.
type Result struct {
	Resources []Resource
	Invalid   []Invalid
}

// typeOrder is the order in which resource types are applied: a cluster
// is in place before the route that names it (make before break).
var typeOrder = map[string]int{
	resourcev3.ClusterType:  0,
	resourcev3.EndpointType: 1,
	resourcev3.ListenerType: 2,
	resourcev3.RouteType:    3,
	resourcev3.SecretType:   -1,
}

// TypeOrder returns the xDS types in make-before-break order.
func TypeOrder() []string {
	return []string{resourcev3.SecretType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}
}

func (r *Result) sort() {
	slices.SortFunc(r.Resources, func(a, b Resource) int {
		if c := cmp.Compare(typeOrder[a.Type], typeOrder[b.Type]); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
}

// ServiceWith returns the Envoy resources of one service for a view: for
// every TCP port of its import an EDS cluster and its endpoints, and for
// clients an API listener and route configuration (with the mesh routes
// of o: ServiceOptions). A service without an import has none, and so has
// a view of a member that does not import it (KEP-1645: a service is
// imported only by the members where its namespace exists, so their
// clients and gateways are not served it). A resource that fails
// validation is reported in Invalid, and so are the listener and route
// of a port whose cluster or endpoints failed: a route is never published
// without its cluster.
func ServiceWith(st *mcs.ServiceState, v View, o ServiceOptions) Result {
	var r Result
	if !ImportedBy(st, v) {
		return r
	}
	for name, p := range ServedPorts(st) {
		affinity := st.Import.SessionAffinity == corev1.ServiceAffinityClientIP
		ok := r.add(v, resourcev3.ClusterType, name, cluster(name, st.Key, p, v, affinity))
		ok = r.add(v, resourcev3.EndpointType, name, loadAssignment(name, st, p, v, false)) && ok
		if tunnelTarget(p, v) {
			tn := TunnelClusterName(st.Key, p.Port)
			r.add(v, resourcev3.ClusterType, tn, cluster(tn, st.Key, p, View{Cluster: v.Cluster, Role: RoleGateway}, affinity))
			r.add(v, resourcev3.EndpointType, tn, loadAssignment(tn, st, p, v, true))
		}
		if ok && relays(p, v) {
			pk := packer{}
			lis := relayListener(st.Key, p, affinity, st.Import.Passthrough, v, pk)
			r.addPacked(v, resourcev3.ListenerType, lis.Name, lis, pk)
		}
		if v.Role != RoleClient {
			continue
		}
		lis, route := ListenerName(st.Key, p.Port), RouteName(st.Key, p.Port)
		if !ok {
			dep := fmt.Errorf("not published: cluster %s failed validation", name)
			r.Invalid = append(r.Invalid, Invalid{resourcev3.ListenerType, lis, dep}, Invalid{resourcev3.RouteType, route, dep})
			continue
		}
		pk := packer{}
		r.addPacked(v, resourcev3.ListenerType, lis, apiListener(lis, route, pk), pk)
		if o.Routes != nil {
			if routes := o.Routes(p.Port); len(routes) > 0 {
				r.add(v, resourcev3.RouteType, route, meshRoute(route, routes, o))
				continue
			}
		}
		r.add(v, resourcev3.RouteType, route, clientRoute(route, name, affinity))
	}
	r.sort()
	return r
}

// ImportedBy reports whether the view's member imports the service: it
// has an import, and the member holds the service's namespace.
func ImportedBy(st *mcs.ServiceState, v View) bool {
	return st != nil && st.Import != nil && slices.Contains(st.Import.ImportedIn, v.Cluster)
}

// ServedPorts yields the import's ports that Envoy and gRPC carry, with
// their cluster names: TCP only (UDP and SCTP ports stay in the
// ServiceImport for other data planes).
func ServedPorts(st *mcs.ServiceState) iter.Seq2[string, *mcs.ImportPort] {
	return func(yield func(string, *mcs.ImportPort) bool) {
		for i := range st.Import.Ports {
			p := &st.Import.Ports[i]
			if p.Protocol != corev1.ProtocolTCP {
				continue
			}
			if !yield(ClusterName(st.Key, p.Port), p) {
				return
			}
		}
	}
}

// ServiceEndpoints returns only the ClusterLoadAssignments of a service
// for a view: what an endpoint-only change (an EndpointSlice, a member's
// readiness) makes new. Their clusters, listeners and routes are the ones
// ServiceWith made for the same shape (ports, type, affinity).
func ServiceEndpoints(st *mcs.ServiceState, v View) Result {
	var r Result
	if !ImportedBy(st, v) {
		return r
	}
	for name, p := range ServedPorts(st) {
		r.add(v, resourcev3.EndpointType, name, loadAssignment(name, st, p, v, false))
		if tunnelTarget(p, v) {
			tn := TunnelClusterName(st.Key, p.Port)
			r.add(v, resourcev3.EndpointType, tn, loadAssignment(tn, st, p, v, true))
		}
	}
	r.sort()
	return r
}

// tunnelTarget reports whether a tunnelling gateway view's member exports
// a port (its tunnel listener then serves it, from a cluster of the
// member's own endpoints).
func tunnelTarget(p *mcs.ImportPort, v View) bool {
	return v.Tunnels() && slices.Contains(p.Clusters, v.Cluster)
}

// Gateway returns a gateway view's HTTP listener and the route
// configuration that sends <svc>.<ns>.svc.clusterset.local[:port] to the
// port's cluster, for the given services (any order). Ports whose cluster
// is not published (see published) get no route.
func Gateway(services []*mcs.ServiceState, v View, published func(cluster string) bool) Result {
	var r Result
	if v.Role != RoleGateway {
		return r
	}
	port := v.GatewayPort
	if port == 0 {
		port = DefaultGatewayPort
	}
	sorted := slices.Clone(services)
	slices.SortFunc(sorted, func(a, b *mcs.ServiceState) int { return a.Key.Compare(b.Key) })
	rc := &routev3.RouteConfiguration{Name: GatewayRouteName(port)}
	for _, st := range sorted {
		// A passthrough import's clients speak TLS to its backends: the
		// Host-routed HTTP listener has nothing to route for them.
		if st == nil || st.Import == nil || st.Import.Passthrough {
			continue
		}
		first := true
		for name, p := range ServedPorts(st) {
			if published != nil && !published(name) {
				continue
			}
			domains := []string{HostPort(st.Key, p.Port)}
			if first {
				// A Host without a port goes to the import's first port.
				domains = append(domains, Host(st.Key))
				first = false
			}
			route := routeTo(name, sourceIPHash(st.Import.SessionAffinity == corev1.ServiceAffinityClientIP))
			route.GetRoute().RetryPolicy = gatewayRetry()
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
				Name:    VirtualHostName(st.Key, p.Port),
				Domains: domains,
				Routes:  []*routev3.Route{route},
			})
		}
	}
	rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
		Name:    GatewayUnknownHostName,
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 404,
				Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: UnknownHostBody}},
			}},
		}},
	})
	lis := GatewayListenerName(port)
	pk := packer{}
	r.addPacked(v, resourcev3.ListenerType, lis, gatewayListener(lis, rc.Name, port, v, pk), pk)
	r.add(v, resourcev3.RouteType, rc.Name, rc)
	if v.Tunnels() {
		tunnel(&r, sorted, v, published)
	}
	r.sort()
	return r
}

// tunnel adds a tunnelling gateway's secrets and its tunnel listener, with
// a filter chain for every port its member exports whose tunnel cluster
// is published (none: no listener, which Envoy would refuse).
func tunnel(r *Result, services []*mcs.ServiceState, v View, published func(cluster string) bool) {
	tunnelSecrets(r, v)
	gatewaysDNS(r, v)
	var ports []tunnelPort
	for _, st := range services {
		if st == nil || st.Import == nil {
			continue
		}
		for _, p := range ServedPorts(st) {
			if tunnelTarget(p, v) && (published == nil || published(TunnelClusterName(st.Key, p.Port))) {
				tp := tunnelPort{key: st.Key, port: p, affinity: st.Import.SessionAffinity == corev1.ServiceAffinityClientIP, passthrough: st.Import.Passthrough}
				if sel := st.Import.Selection; sel != nil && sel.Strict {
					tp.strict = true
					for _, importer := range st.Import.ImportedIn {
						if importer != v.Cluster && st.Import.Selects(importer, v.Cluster) {
							tp.admitted = append(tp.admitted, importer)
						}
					}
				}
				ports = append(ports, tp)
			}
		}
	}
	if len(ports) == 0 {
		return
	}
	pk := packer{}
	lis := tunnelListener(ports, v, pk)
	r.addPacked(v, resourcev3.ListenerType, lis.Name, lis, pk)
}

// add validates a resource and keeps it, or records why not.
func (r *Result) add(v View, typ, name string, m proto.Message) bool {
	return r.addPacked(v, typ, name, m, nil)
}

// addEnvoyOnly is addPacked for a resource only Envoys get (never a
// proxyless client): gRPC's rules do not apply to it.
func (r *Result) addEnvoyOnly(typ, name string, m proto.Message, p packer) {
	r.addPacked(View{}, typ, name, m, p)
}

// addPacked is add for a resource whose embedded configs p packed: they
// are validated as the typed messages they were, not unpacked again.
func (r *Result) addPacked(v View, typ, name string, m proto.Message, p packer) bool {
	if err := validate(m, v.Role, p); err != nil {
		r.Invalid = append(r.Invalid, Invalid{Type: typ, Name: name, Err: err})
		return false
	}
	r.Resources = append(r.Resources, Resource{Type: typ, Name: name, Message: m})
	return true
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// cluster is a port's EDS cluster. Gateways speak HTTP/2 to ports whose
// appProtocol says so (kubernetes.io/h2c, grpc); gRPC clients ignore
// protocol options and always speak HTTP/2.
// sessionAffinity ClientIP (KEP-1645 "Session Affinity") becomes consistent
// hashing: the cluster balances with RING_HASH, and the route hashes what
// identifies the client: the source IP at a gateway, the channel for a
// proxyless gRPC client (which is the client itself). The affinity
// timeout has no Envoy equivalent and is not carried.
//
// A tunnelling gateway's cluster sends to the endpoints of members on
// other networks (their gateways) through the tunnel's transport socket.
func cluster(name string, key mcs.ServiceKey, p *mcs.ImportPort, v View, affinity bool) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		ConnectTimeout:       durationpb.New(5 * time.Second),
	}
	if affinity {
		c.LbPolicy = clusterv3.Cluster_RING_HASH
	}
	if v.Role == RoleGateway {
		envoyCluster(c, affinity)
		c.AltStatName = StatName(key, p.Port)
		if name == TunnelClusterName(key, p.Port) {
			c.AltStatName = TunnelStatName(key, p.Port)
		}
	}
	if v.Tunnels() {
		tunnelSocket(c, key, p.Port, v.Net)
	}
	if v.Role == RoleGateway && isHTTP2(p.AppProtocol) {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
					ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
						ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
							Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
						},
					},
				},
			}),
		}
	}
	return c
}

// What an Envoy (an east-west gateway, a Gateway's Envoy) does that
// gRPC clients do on their own or not at all. gRPC clients' clusters keep
// none of it: gRPC always honours locality weights, and ejects nothing.
const (
	// OutlierConsecutive5xx is how many 5xx answers in a row eject an
	// endpoint.
	OutlierConsecutive5xx = 5
	// OutlierConsecutiveConnectFailures is how many connections in a row
	// refused, reset or timed out (the endpoint, or the network to it,
	// is gone) eject an endpoint: fewer than answers, since a request
	// that meets one is retried elsewhere but pays for it.
	OutlierConsecutiveConnectFailures = 2
	// GatewayConnectTimeout bounds a gateway's TCP (and tunnel) connect:
	// a connection to a network whose link is cut (packets dropped, no
	// refusal) fails, and is retried elsewhere, after this long. Any RTT
	// on Earth, with a SYN retransmitted, fits in it.
	GatewayConnectTimeout = 2 * time.Second
	// GatewayMaxConnections is each gateway cluster's circuit breaker
	// (connections, pending and active requests; Envoy's default, set
	// explicitly).
	GatewayMaxConnections = 1024
	// GatewayIdleTimeout closes a tunnelled or relayed connection, or an
	// HTTP connection, idle this long (Envoy's default for tcp_proxy and
	// HTTP, set explicitly).
	GatewayIdleTimeout = time.Hour
	// OutlierBaseEjection is how long an endpoint is first ejected
	// (Envoy multiplies it by the number of ejections).
	OutlierBaseEjection = 30 * time.Second
	// OverprovisioningFactor is Envoy's default, set explicitly: a
	// priority (the local member at 0, the others at 1) keeps all its
	// traffic while at least 100/140 = 72% of its endpoints are healthy,
	// and hands the rest to the next priority below that, in proportion.
	// A member losing a few endpoints keeps its traffic local; one losing
	// most of them spills over gradually rather than at the first one.
	OverprovisioningFactor = 140
)

// UnknownHostBody is the east-west gateway's answer to a Host that names
// no ClusterSet service port.
const UnknownHostBody = "eastwest gateway: no exported service answers to this host; ask for <service>.<namespace>." + ClusterSetDomain + "[:<port>]\n"

// gatewayRetry retries, on another endpoint and preferably another
// priority (member), a request that never reached a backend: the
// connection was refused or reset before the request was sent. Such a
// retry is safe for any method. Without it, the requests sent to an
// endpoint that died (and that the control plane still sees ready, as it
// keeps an unreachable member's last state) fail until outlier detection
// ejects it, about a second later; with it they go elsewhere.
func gatewayRetry() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:    "connect-failure,refused-stream,reset-before-request",
		NumRetries: wrapperspb.UInt32(2),
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})},
		}},
		HostSelectionRetryMaxAttempts: 3,
		RetryPriority: &routev3.RetryPolicy_RetryPriority{
			Name:       "envoy.retry_priorities.previous_priorities",
			ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: mustAny(&previousprioritiesv3.PreviousPrioritiesConfig{UpdateFrequency: 1})},
		},
	}
}

// envoyCluster makes a cluster behave in Envoy as eastwest means it:
// locality weights (each member's ready endpoints) decide the split among
// the members of a priority, as they do in gRPC (Envoy ignores them
// without locality_weighted_lb_config; ring hash does not take it and
// spreads by endpoint); and outlier detection ejects an endpoint that
// refuses connections (twice), cannot be reached in GatewayConnectTimeout
// (twice), or answers 5xx (five times), so traffic moves off a backend (or
// a whole member) that fails while the control plane still sees it
// ready (an unreachable member's last state is kept). Every endpoint of
// a priority may be ejected (max 100%): then the next priority, another
// member, takes the traffic.
func envoyCluster(c *clusterv3.Cluster, affinity bool) {
	if !affinity {
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{
			LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
				LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
			},
		}
	}
	c.ConnectTimeout = durationpb.New(GatewayConnectTimeout)
	// Explicit, not Envoy's defaults by omission: they are what bounds a
	// loop that gets past the control plane (an endpoint that is a
	// gateway is left out: mcs/loop.go), and what an operator reads in
	// the config dump.
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     wrapperspb.UInt32(GatewayMaxConnections),
		MaxPendingRequests: wrapperspb.UInt32(GatewayMaxConnections),
		MaxRequests:        wrapperspb.UInt32(GatewayMaxConnections),
		MaxRetries:         wrapperspb.UInt32(3),
	}}}
	c.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx:                wrapperspb.UInt32(OutlierConsecutive5xx),
		SplitExternalLocalOriginErrors: true,
		ConsecutiveLocalOriginFailure:  wrapperspb.UInt32(OutlierConsecutiveConnectFailures),
		Interval:                       durationpb.New(5 * time.Second),
		BaseEjectionTime:               durationpb.New(OutlierBaseEjection),
		MaxEjectionPercent:             wrapperspb.UInt32(100),
	}
}

func isHTTP2(appProtocol *string) bool {
	if appProtocol == nil {
		return false
	}
	switch *appProtocol {
	case "kubernetes.io/h2c", "grpc", "h2c", "http2":
		return true
	}
	return false
}

// locality is one member cluster's share of a port's endpoints.
type locality struct {
	cluster mcs.ClusterID
	zone    string
	healthy int
	eps     []*endpointv3.LbEndpoint
	rank    int   // tiers.rank, before priorities are made contiguous
	place   place // what rank means (explain's words, made only for explain)
	weight  uint32
}

// loadAssignment is a port's endpoints as the view's cluster sees them:
// one locality per member cluster that exposes the port and has endpoints
// for it. A locality's region and zone are the member's cluster ID (the
// zone so that an Envoy running with --service-zone <its member> counts
// its requests per source and destination member: the cross-cluster
// traffic stats), its sub-zone the Kubernetes zone of the member's
// endpoints when they are all in one. Ready endpoints are HEALTHY, serving-but-terminating ones
// DRAINING, the rest are left out.
//
// Priorities are the service's tiers for the view's member (tiers): by
// default the view's own member, then every other; with cluster
// selectors (KEP-5939), the clusters of each selector in order, then the
// clusters no selector matches (left out when the selection is strict).
// Drained members (weight 0) come after every tier, members with only
// draining endpoints last. Priorities are contiguous from 0. A locality's
// weight is its member's declared weight when the service has any
// (weights split a tier), else its healthy endpoints; at least 1.
//
// A member on another network is reached through its gateways (one
// endpoint per gateway address, its healthy endpoints their weight) when
// the view tunnels, and is left out when it cannot (see reach). With
// localOnly only the view's own member's endpoints are given, with no
// tiers or weights (a tunnel listener's cluster, a local Service).
func loadAssignment(name string, st *mcs.ServiceState, p *mcs.ImportPort, v View, localOnly bool) *endpointv3.ClusterLoadAssignment {
	return assign(name, st, p, v, localOnly, nil)
}

// assign is loadAssignment, recording each member's placement when
// record is not nil.
func assign(name string, st *mcs.ServiceState, p *mcs.ImportPort, v View, localOnly bool, record *[]Placement) *endpointv3.ClusterLoadAssignment {
	local := v.Cluster
	t := tiersFor(st, v, localOnly)
	// The reasons are put in words only when recorded (explain): a
	// translation makes none.
	left := func(c mcs.ClusterID, why string) {
		*record = append(*record, Placement{Member: c, Priority: -1, Why: why})
	}
	var locs []*locality
	for _, c := range p.Clusters {
		b := st.Backend(c)
		if b == nil || localOnly && c != local {
			continue
		}
		way, gateways, why := v.reach(c)
		if way == unreachable {
			if record != nil {
				left(c, why.String())
			}
			continue
		}
		rank, pl, ok := t.rank(c)
		if !ok {
			if record != nil {
				left(c, t.describe(pl))
			}
			continue
		}
		// Ranks are doubled: with the clients' zone preferred, a tier's
		// endpoints for that zone take its even rank, the others the odd
		// one after it (zoned). Declared weights split a tier by member,
		// and a member without endpoints for the zone would lose its
		// share: then only the view's own member is split (its share
		// goes to its zone's endpoints first).
		loc := &locality{cluster: c, rank: 2 * rank, place: pl}
		zoned := !localOnly && v.Zone != "" && prefersZone(st) && (c == local || !t.weighted)
		near := zoned && way == direct
		var isNear []bool
		zones := map[string]bool{}
		for _, s := range b.Slices {
			target, ok := s.Port(p.Name, p.Protocol)
			if !ok || target < 1 || target > 65535 || s.AddressType == "FQDN" {
				continue
			}
			if !near {
				// The slice's endpoints as every view has them, built
				// once (endpoints.go).
				se := endpointsOf(s, uint32(target)) //nolint:gosec // target is checked to be 1-65535 above
				loc.eps = append(loc.eps, se.eps...)
				loc.healthy += se.healthy
				for _, z := range se.zones {
					zones[z] = true
				}
				continue
			}
			for e := range s.All() {
				health, ok := endpointHealth(e)
				if !ok {
					continue
				}
				for _, addr := range e.Addresses {
					loc.eps = append(loc.eps, lbEndpoint(addr, uint32(target), health, e.Hostname)) //nolint:gosec // target is checked to be 1-65535 above
					if health == corev3.HealthStatus_HEALTHY {
						loc.healthy++
					}
					zones[e.Zone] = true
					if near {
						isNear = append(isNear, e.Near(v.Zone))
					}
				}
			}
		}
		if len(loc.eps) == 0 {
			if record != nil {
				left(c, "no ready or terminating-but-serving endpoint for this port")
			}
			continue
		}
		switch way {
		case tunnelled:
			loc.eps, zones = tunnelEndpoints(c, gateways, loc.healthy), nil
		case relayed:
			loc.eps, zones = relayedEndpoint(gateways[0], loc.healthy), nil
		}
		if len(zones) == 1 {
			for z := range zones {
				loc.zone = z
			}
		}
		loc.weight = uint32(min(max(1, loc.healthy), math.MaxInt32))
		switch {
		case loc.healthy == 0:
			loc.rank, loc.place = 2*t.last(), place{kind: onlyDraining}
		case t.weighted && b.WeightOf() == 0:
			loc.rank, loc.place = 2*t.drained(), place{kind: drained}
		case t.weighted:
			loc.weight = uint32(b.WeightOf()) //nolint:gosec // 0..mcs.MaxWeight, checked when read
			loc.place.weight = declaredWeight
			if b.Weight == nil {
				loc.place.weight = defaultWeight
			}
		}
		locs = append(locs, loc)
		switch {
		case !zoned || loc.place.kind == drained || loc.place.kind == onlyDraining:
		case near:
			// With weights the member keeps its share when none of its
			// endpoints is for the zone.
			if far := loc.splitNear(isNear, v.Zone, !t.weighted); far != nil {
				locs = append(locs, far)
			}
		default: // behind gateways: its endpoints' zones are not known here
			loc.rank++
			loc.place.zone = unknownZones
		}
	}
	slices.SortStableFunc(locs, func(a, b *locality) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		return cmp.Compare(a.cluster, b.cluster)
	})
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name, Policy: &endpointv3.ClusterLoadAssignment_Policy{
		OverprovisioningFactor: wrapperspb.UInt32(OverprovisioningFactor),
	}}
	priority, last := uint32(0), -1
	for i, l := range locs {
		if i > 0 && l.rank != last {
			priority++
		}
		last = l.rank
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Region: Locality(l.cluster), Zone: Locality(l.cluster), SubZone: l.zone},
			LbEndpoints:         l.eps,
			LoadBalancingWeight: wrapperspb.UInt32(l.weight),
			Priority:            priority,
		})
		if record != nil {
			*record = append(*record, Placement{Member: l.cluster, Priority: int(priority), Tier: t.describe(l.place) + l.place.weightNote(l.weight) + l.place.zoneNote(v.Zone), Weight: l.weight})
		}
	}
	return cla
}

// prefersZone reports whether a service's trafficDistribution asks for
// the client's zone first: PreferClose and PreferSameZone (and
// PreferSameNode, whose node eastwest does not know: its zone then).
func prefersZone(st *mcs.ServiceState) bool {
	if st.Import == nil {
		return false
	}
	switch st.Import.TrafficDistribution {
	case "PreferClose", "PreferSameZone", "PreferSameNode":
		return true
	}
	return false
}

// splitNear keeps in l the endpoints near zone (for the view's clients'
// zone: isNear, by endpoint) and returns the others as a locality of the
// sub-tier after l's. It returns nil when all are near (l stays whole,
// near), or when no near one is healthy: then l moves whole to the
// sub-tier after when demote is set (a tier without a ready endpoint for
// the zone is then ordered as without a zone, kube-proxy's fallback too),
// else stays as it is.
func (l *locality) splitNear(isNear []bool, zone string, demote bool) *locality {
	var nearEps, farEps []*endpointv3.LbEndpoint
	nearHealthy := 0
	for i, ep := range l.eps {
		if isNear[i] {
			nearEps = append(nearEps, ep)
			if ep.GetHealthStatus() == corev3.HealthStatus_HEALTHY {
				nearHealthy++
			}
		} else {
			farEps = append(farEps, ep)
		}
	}
	switch {
	case nearHealthy == 0 && !demote:
		return nil
	case nearHealthy == 0:
		l.rank++
		l.place.zone = otherZones
		return nil
	case len(farEps) == 0:
		l.zone = zone
		l.place.zone = clientZone
		return nil
	}
	far := *l
	far.eps, far.healthy, far.rank, far.zone = farEps, l.healthy-nearHealthy, l.rank+1, ""
	far.place.zone = otherZones
	l.eps, l.healthy, l.zone = nearEps, nearHealthy, zone
	l.place.zone = clientZone
	if l.place.weight == endpointWeight {
		l.weight = uint32(min(nearHealthy, math.MaxInt32))
		far.weight = uint32(min(max(1, far.healthy), math.MaxInt32))
	}
	return &far
}

func lbEndpoint(addr string, port uint32, health corev3.HealthStatus, hostname string) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address:       addr,
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
			}}},
			Hostname: hostname,
		}},
		HealthStatus: health,
	}
}

func httpConnectionManager(statPrefix, route string, p packer) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: StatPrefix(statPrefix),
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: route,
		}},
		// gRPC requires a non-empty filter list ending in the router with
		// its typed_config.
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: p.any(&routerv3.Router{})},
		}},
	}
}

// apiListener is the listener a gRPC client looks up for
// xds:///<svc>.<ns>.svc.clusterset.local:<port>.
func apiListener(name, route string, p packer) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: p.any(httpConnectionManager(name, route, p))},
	}
}

func clientRoute(name, cluster string, affinity bool) *routev3.RouteConfiguration {
	var hash []*routev3.RouteAction_HashPolicy
	if affinity {
		hash = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{
			FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: "io.grpc.channel_id"},
		}}}
	}
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes:  []*routev3.Route{routeTo(cluster, hash)},
		}},
	}
}

// sourceIPHash is a gateway route's hash policy for ClientIP affinity.
func sourceIPHash(affinity bool) []*routev3.RouteAction_HashPolicy {
	if !affinity {
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
		ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
	}}}
}

func routeTo(cluster string, hash []*routev3.RouteAction_HashPolicy) *routev3.Route {
	return &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			HashPolicy:       hash,
		}},
	}
}

// trafficLog is the access log of a listener that sends this view's
// member's traffic to other members: the bytes of the cross-cluster
// traffic stats (envoystats.TrafficLog), counted as each request or
// connection ends.
func trafficLog(v View, p packer) []*accesslogv3.AccessLog {
	return []*accesslogv3.AccessLog{{
		Name:       "envoy.access_loggers.stats",
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: p.any(envoystats.TrafficLog(string(v.Cluster)))},
	}}
}

func gatewayListener(name, route string, port uint32, v View, p packer) *listenerv3.Listener {
	hcm := httpConnectionManager(name, route, p)
	hcm.AccessLog = trafficLog(v, p)
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       v.listenAddress(),
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: p.any(hcm)},
			}},
		}},
	}
}

// packer remembers the typed message of every Any it packs for one
// resource, so that validating the resource reads the embedded configs
// as they were built instead of unmarshalling what was just marshalled.
type packer map[*anypb.Any]proto.Message

// any packs m (mustAny) and remembers it.
func (p packer) any(m proto.Message) *anypb.Any {
	a := mustAny(m)
	if p != nil {
		p[a] = m
	}
	return a
}

// mustAny packs a message deterministically, so that equal configs give
// equal bytes and equal versions. Packing a well-formed message cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", m, err))
	}
	return &anypb.Any{TypeUrl: resourcev3.APITypePrefix + string(m.ProtoReflect().Descriptor().FullName()), Value: b}
}

// TypeName is a type URL's message name (Cluster, ClusterLoadAssignment,
// Listener, RouteConfiguration, Secret): the one short name of a type,
// for logs, metrics labels and rendered output.
func TypeName(typeURL string) string { return typeURL[strings.LastIndex(typeURL, ".")+1:] }
