package translate

import (
	"bytes"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetworkv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/eastwest-dev/eastwest/pkg/identity"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// Networks and tunnels.
//
// Members on one network reach each other's pods directly. A member on
// another network is reached through its east-west gateways: an east-west
// gateway of member A gets, for member B on another network, one endpoint
// per B gateway address, which it dials with mutual TLS and the SNI of the
// service port (TunnelSNI). B's gateway terminates the tunnel on its tunnel
// listener, one filter chain per port B exports, and sends the connection
// to B's own endpoints of that port only (TunnelClusterName): never to
// another gateway, so traffic cannot loop.
//
// A proxyless gRPC client reaches another network through its own
// member's gateways: the member's locality is one endpoint, the gateway
// Service's in-cluster address and HTTP port, where the Host-routed
// listener sends the RPC on through the tunnel. Views that cannot tunnel
// (Gateway API Envoys, any view of a member whose gateways have no tunnel
// certificate or in-cluster address) are not given the endpoints of
// members on other networks, which they could not reach: they get their
// own network's.

// DefaultTrustDomain is the trust domain of eastwest's identities (xDS
// clients and tunnel peers).
const DefaultTrustDomain = identity.DefaultTrustDomain

// Topology is how the members of a ClusterSet reach each other. Nil is a
// flat ClusterSet: every member reaches every pod.
type Topology struct {
	// Members are the members by cluster ID.
	Members map[mcs.ClusterID]NetworkMember
	// TrustBundle is the ClusterSet's trust bundle for tunnels: the CA
	// certificates (PEM) of every member's tunnel Secret, deduplicated.
	TrustBundle []byte
	// TrustDomain and ClusterSet name the identity a peer gateway's
	// certificate must carry in a URI SAN:
	// spiffe://<trust domain>/clusterset/<clusterset>/cluster/<id>/role/gateway
	// (any ClusterSet when empty).
	TrustDomain string
	ClusterSet  string
}

// NetworkMember is one member as the others reach it.
type NetworkMember struct {
	Network string
	// Gateways are where its east-west gateways take tunnels: IP
	// addresses (EDS endpoints) and host names (a DNS cluster behind an
	// internal listener: gatewaysDNS).
	Gateways []mcs.GatewayAddress
	// Certificate is its gateways' tunnel certificate; nil when it has
	// none (its gateways then have no tunnel listener).
	Certificate *Certificate
	// Local is where its own clients without a proxy reach its gateways
	// (nil: they cannot).
	Local *mcs.GatewayAddress
	// TrustAnchor is the member's CA certificates (PEM) from the
	// operator's trust anchors: a gateway dialing this member trusts them
	// alone. Nil: the whole TrustBundle.
	TrustAnchor []byte
	// Problem says why other networks may not reach it (its gateway
	// addresses or tunnel certificate), as its ClusterInfo reports it;
	// CertificateProblem why its gateways have no usable tunnel
	// certificate. Reasons only, for explain (Placement.Why).
	Problem, CertificateProblem string
	// Pins are the hex SHA-256 hashes of the leaf certificates its
	// gateways may present (the tunnel Secret's, and the one before or
	// after it during a rotation): its peers accept those alone.
	Pins []string
}

// Certificate is a PEM certificate chain and its private key.
type Certificate struct {
	Chain, Key []byte
}

// Equal reports whether two topologies give the same configuration.
func (t *Topology) Equal(o *Topology) bool {
	if t == nil || o == nil {
		return t == o
	}
	if !bytes.Equal(t.TrustBundle, o.TrustBundle) || t.TrustDomain != o.TrustDomain || t.ClusterSet != o.ClusterSet || len(t.Members) != len(o.Members) {
		return false
	}
	for id, m := range t.Members {
		n, ok := o.Members[id]
		if !ok || m.Network != n.Network || !slices.Equal(m.Gateways, n.Gateways) || (m.Certificate == nil) != (n.Certificate == nil) || (m.Local == nil) != (n.Local == nil) {
			return false
		}
		if m.Local != nil && *m.Local != *n.Local || !bytes.Equal(m.TrustAnchor, n.TrustAnchor) || !slices.Equal(m.Pins, n.Pins) || m.Problem != n.Problem || m.CertificateProblem != n.CertificateProblem {
			return false
		}
		if m.Certificate != nil && (!bytes.Equal(m.Certificate.Chain, n.Certificate.Chain) || !bytes.Equal(m.Certificate.Key, n.Certificate.Key)) {
			return false
		}
	}
	return true
}

// Tunnels reports whether a member's east-west gateways hold what tunnels
// take: a certificate and a trust bundle.
func (t *Topology) Tunnels(id mcs.ClusterID) bool {
	return t != nil && t.Members[id].Certificate != nil && len(t.TrustBundle) > 0
}

// Tunnels reports whether a view is an east-west gateway that tunnels.
func (v View) Tunnels() bool { return v.Role == RoleGateway && v.Net.Tunnels(v.Cluster) }

// reach is how a view reaches a member's endpoints.
type reach int

const (
	unreachable reach = iota
	direct
	tunnelled // through c's gateways, from this gateway
	relayed   // through this member's gateways (a proxyless client)
)

// reach says how view v reaches member c, through which gateways, and
// when it cannot, why (what explain prints: the because is rendered only
// when asked, so translating costs no string).
func (v View) reach(c mcs.ClusterID) (reach, []mcs.GatewayAddress, because) {
	t := v.Net
	if t == nil || c == v.Cluster || t.Members[c].Network == t.Members[v.Cluster].Network {
		return direct, nil, because{}
	}
	switch v.Role {
	case RoleClient:
		local := t.Members[v.Cluster].Local
		if local == nil {
			return unreachable, nil, because{code: noLocalGateway}
		}
		gw := View{Cluster: v.Cluster, Role: RoleGateway, Net: t}
		way, _, why := gw.reach(c)
		if way != tunnelled {
			why.viaLocal = true
			return unreachable, nil, why
		}
		return relayed, []mcs.GatewayAddress{*local}, because{}
	case RoleGateway:
	default:
		return unreachable, nil, because{code: doesNotTunnel}
	}
	mine, theirs := t.Members[v.Cluster], t.Members[c]
	switch {
	case !v.Tunnels():
		return unreachable, nil, because{code: noOwnCertificate, problem: mine.CertificateProblem}
	case theirs.Problem != "":
		return unreachable, nil, because{code: theirProblem, member: c, problem: theirs.Problem}
	case !t.Tunnels(c):
		return unreachable, nil, because{code: noTheirCertificate, member: c, problem: theirs.CertificateProblem}
	case len(theirs.Gateways) == 0:
		return unreachable, nil, because{code: noGatewayAddress, member: c}
	}
	return tunnelled, theirs.Gateways, because{}
}

// because is why reach finds a member unreachable.
type because struct {
	code     int
	member   mcs.ClusterID
	problem  string
	viaLocal bool // a proxyless client's local gateways cannot
}

// The reasons reach gives.
const (
	noLocalGateway = iota + 1
	doesNotTunnel
	noOwnCertificate
	theirProblem
	noTheirCertificate
	noGatewayAddress
)

func (b because) String() string {
	var why string
	switch b.code {
	case noLocalGateway:
		return "a proxyless client reaches other networks through its member's east-west gateways, and this member has none it can use (their Service needs a cluster IP and a port named http)"
	case doesNotTunnel:
		return "only east-west gateways tunnel to other networks; a Gateway's Envoy reaches the members of its own network"
	case noOwnCertificate:
		why = "this member's east-west gateways hold no usable tunnel certificate" + problem(b.problem)
	case theirProblem:
		why = string(b.member) + ": " + b.problem
	case noTheirCertificate:
		why = string(b.member) + "'s east-west gateways hold no usable tunnel certificate" + problem(b.problem)
	case noGatewayAddress:
		why = string(b.member) + " has no east-west gateway address"
	}
	if b.viaLocal {
		return "a proxyless client reaches other networks through its member's east-west gateways, which cannot: " + why
	}
	return why
}

// byHostName splits gateway addresses into IP addresses and host names.
func byHostName(gws []mcs.GatewayAddress) (ips, names []mcs.GatewayAddress) {
	for _, g := range gws {
		if _, err := netip.ParseAddr(g.Address); err == nil {
			ips = append(ips, g)
		} else {
			names = append(names, g)
		}
	}
	return ips, names
}

// tunnelEndpoints are a remote member's endpoints as a tunnelling gateway
// sees them: one per gateway IP address, and one for all its host names
// (the internal listener GatewaysDNSName, which forwards the tunnel's
// bytes to the addresses Envoy resolves them to), marked for the tunnel's
// transport socket, with the member's healthy endpoints split among the
// addresses as weights.
func tunnelEndpoints(member mcs.ClusterID, gws []mcs.GatewayAddress, healthy int) []*endpointv3.LbEndpoint {
	health := corev3.HealthStatus_HEALTHY
	if healthy == 0 {
		health = corev3.HealthStatus_DRAINING
	}
	weight := uint32(max(1, min(healthy/len(gws), 1<<24))) //nolint:gosec // bounded above
	match := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.transport_socket_match": {Fields: map[string]*structpb.Value{TunnelMatch: structpb.NewStringValue(string(member))}},
	}}
	ips, names := byHostName(gws)
	out := make([]*endpointv3.LbEndpoint, 0, len(ips)+1)
	for _, g := range ips {
		e := lbEndpoint(g.Address, uint32(g.Port), health, "") //nolint:gosec // a Service port is 1-65535
		e.LoadBalancingWeight = wrapperspb.UInt32(weight)
		e.Metadata = match
		out = append(out, e)
	}
	if len(names) > 0 {
		e := &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_EnvoyInternalAddress{EnvoyInternalAddress: &corev3.EnvoyInternalAddress{
					AddressNameSpecifier: &corev3.EnvoyInternalAddress_ServerListenerName{ServerListenerName: GatewaysDNSName(member)},
				}}},
			}},
			HealthStatus:        health,
			LoadBalancingWeight: wrapperspb.UInt32(weight * uint32(len(names))), //nolint:gosec // a few host names
			Metadata:            match,
		}
		out = append(out, e)
	}
	return out
}

// gatewaysDNS adds, for every member on another network whose gateways
// have host names, what a tunnelling gateway reaches them through: a
// STRICT_DNS cluster of the host names (Envoy resolves them, the control
// plane never does) and an internal listener that passes a tunnel's bytes
// (already TLS) to it. The gateway's bootstrap enables internal listeners
// (deploy/envoy/bootstrap.yaml).
func gatewaysDNS(r *Result, v View) {
	t := v.Net
	for _, id := range slices.Sorted(maps.Keys(t.Members)) {
		if way, gws, _ := v.reach(id); way == tunnelled {
			_, names := byHostName(gws)
			if len(names) == 0 {
				continue
			}
			name := GatewaysDNSName(id)
			c := &clusterv3.Cluster{
				Name:                 name,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
				ConnectTimeout:       durationpb.New(GatewayConnectTimeout),
				DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
				LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{}}},
			}
			for _, g := range names {
				c.LoadAssignment.Endpoints[0].LbEndpoints = append(c.LoadAssignment.Endpoints[0].LbEndpoints, lbEndpoint(g.Address, uint32(g.Port), corev3.HealthStatus_UNKNOWN, "")) //nolint:gosec // a Service port is 1-65535
			}
			r.addEnvoyOnly(resourcev3.ClusterType, name, c, nil)
			pk := packer{}
			r.addEnvoyOnly(resourcev3.ListenerType, name, &listenerv3.Listener{
				Name:              name,
				ListenerSpecifier: &listenerv3.Listener_InternalListener{InternalListener: &listenerv3.Listener_InternalListenerConfig{}},
				FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
					Name: "envoy.filters.network.tcp_proxy",
					ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: pk.any(&tcpproxyv3.TcpProxy{
						StatPrefix:       name,
						ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: name},
					})},
				}}}},
			}, pk)
		}
	}
}

// relayedEndpoint is a remote member's endpoints as a proxyless client
// sees them: its own member's gateways, which route by :authority.
func relayedEndpoint(local mcs.GatewayAddress, healthy int) []*endpointv3.LbEndpoint {
	health := corev3.HealthStatus_HEALTHY
	if healthy == 0 {
		health = corev3.HealthStatus_DRAINING
	}
	return []*endpointv3.LbEndpoint{lbEndpoint(local.Address, uint32(local.Port), health, "")} //nolint:gosec // a Service port is 1-65535
}

// tunnelSocket adds to a gateway's cluster the transport sockets its
// tunnelled endpoints use: mutual TLS with the port's SNI, one per member
// that tunnels (an endpoint says which member's gateway it is), each
// accepting only that member's gateways (TunnelPeerSecret). Every view's
// cluster lists every member, so that the cluster is the same in every
// view of the role.
func tunnelSocket(c *clusterv3.Cluster, key mcs.ServiceKey, port int32, t *Topology) {
	c.TransportSocketMatches = nil
	for _, id := range slices.Sorted(maps.Keys(t.Members)) {
		if t.Members[id].Certificate == nil {
			continue
		}
		ctx := &tlsv3.UpstreamTlsContext{Sni: TunnelSNI(key, port), CommonTlsContext: tunnelTLS(TunnelPeerSecret(id))}
		c.TransportSocketMatches = append(c.TransportSocketMatches, &clusterv3.Cluster_TransportSocketMatch{
			Name:  TunnelMatch + ":" + string(id),
			Match: &structpb.Struct{Fields: map[string]*structpb.Value{TunnelMatch: structpb.NewStringValue(string(id))}},
			TransportSocket: &corev3.TransportSocket{
				Name:       "envoy.transport_sockets.tls",
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
			},
		})
	}
}

// tunnelTLS is one end's TLS: the gateway's certificate and the peer
// check named (TunnelTrustSecret inbound, TunnelPeerSecret outbound),
// over SDS on the ADS stream (no key material in clusters or listeners).
func tunnelTLS(peerCheck string) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: TunnelCertificateSecret, SdsConfig: adsSource()}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: peerCheck, SdsConfig: adsSource()},
		},
	}
}

// PeerMatchers are the URI SANs one of which a tunnel peer's certificate
// must carry on the tunnel listener: the gateway identity of a member of
// this ClusterSet.
func (t *Topology) PeerMatchers() []*tlsv3.SubjectAltNameMatcher {
	return t.peerMatchers(slices.Sorted(maps.Keys(t.Members)))
}

// peerMatchers are the gateway identities of members ids, built from the
// parsed form of the identity (package identity), so Envoy compares
// exactly what the xDS check would accept: an exact string per member
// when the ClusterSet's name is configured; without it, any ClusterSet
// name that is a SPIFFE path segment, for these members only.
func (t *Topology) peerMatchers(ids []mcs.ClusterID) []*tlsv3.SubjectAltNameMatcher {
	san := func(m *matcherv3.StringMatcher) *tlsv3.SubjectAltNameMatcher {
		return &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: m}
	}
	if t.ClusterSet == "" {
		alt := make([]string, len(ids))
		for i, id := range ids {
			alt[i] = regexp.QuoteMeta(string(id))
		}
		td := t.TrustDomain
		if td == "" {
			td = identity.DefaultTrustDomain
		}
		re := "^spiffe://" + regexp.QuoteMeta(td) + "/clusterset/[A-Za-z0-9._-]+/cluster/(" + strings.Join(alt, "|") + ")/role/gateway$"
		return []*tlsv3.SubjectAltNameMatcher{san(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}})}
	}
	out := make([]*tlsv3.SubjectAltNameMatcher, 0, len(ids))
	for _, id := range ids {
		uri := identity.ID{TrustDomain: t.TrustDomain, ClusterSet: t.ClusterSet, Cluster: string(id), Role: identity.RoleGateway}.String()
		out = append(out, san(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: uri}}))
	}
	return out
}

// peerPins are the certificates a tunnel listener accepts: those the
// members' tunnel Secrets hold (NetworkMember.Pins), on top of the CA and
// identity checks. A certificate for a member's gateway identity from a
// valid issuer that the member's Secret never held (another member's
// issuer minting it, a stolen issuer key) opens no tunnel.
func (t *Topology) peerPins() []string {
	var out []string
	for _, m := range t.Members {
		out = append(out, m.Pins...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// tunnelSecrets are a tunnelling gateway's SDS secrets: its member's
// certificate, and the trust bundle with the peer identity check.
func tunnelSecrets(r *Result, v View) {
	cert := v.Net.Members[v.Cluster].Certificate
	r.add(v, resourcev3.SecretType, TunnelCertificateSecret, &tlsv3.Secret{
		Name: TunnelCertificateSecret,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: cert.Chain}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: cert.Key}},
		}},
	})
	r.add(v, resourcev3.SecretType, TunnelTrustSecret, &tlsv3.Secret{
		Name: TunnelTrustSecret,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: v.Net.TrustBundle}},
			MatchTypedSubjectAltNames: v.Net.PeerMatchers(),
			VerifyCertificateHash:     v.Net.peerPins(),
		}},
	})
	for _, id := range slices.Sorted(maps.Keys(v.Net.Members)) {
		m := v.Net.Members[id]
		if m.Certificate == nil {
			continue
		}
		ca := m.TrustAnchor
		if ca == nil {
			ca = v.Net.TrustBundle
		}
		r.add(v, resourcev3.SecretType, TunnelPeerSecret(id), &tlsv3.Secret{
			Name: TunnelPeerSecret(id),
			Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: ca}},
				MatchTypedSubjectAltNames: v.Net.peerMatchers([]mcs.ClusterID{id}),
				VerifyCertificateHash:     m.Pins,
			}},
		})
	}
}

// tunnelListener is a tunnelling gateway's tunnel listener: TLS with a
// client certificate required, one filter chain per exported port of the
// member's (by SNI), each to the port's local endpoints; TCP through
// tcp_proxy, HTTP through an HTTP connection manager (requests balanced
// one by one, and retried on another endpoint when one refuses). A
// connection with any other SNI, or none, matches no chain and is closed.
func tunnelListener(ports []tunnelPort, v View, p packer) *listenerv3.Listener {
	port := v.TunnelPort
	if port == 0 {
		port = mcs.DefaultTunnelPort
	}
	name := TunnelListenerName(port)
	lis := &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       v.listenAddress(),
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
		}},
	}
	socket := &corev3.TransportSocket{
		Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.DownstreamTlsContext{
			CommonTlsContext:         tunnelTLS(TunnelTrustSecret),
			RequireClientCertificate: wrapperspb.Bool(true),
		})},
	}
	for _, tp := range ports {
		sni, cluster := TunnelSNI(tp.key, tp.port.Port), TunnelClusterName(tp.key, tp.port.Port)
		// No traffic log: what arrives here comes from other members,
		// and their gateways count it.
		filters := []*listenerv3.Filter{toCluster(cluster, tp.port, tp.affinity, tp.passthrough, nil, p)}
		if tp.strict {
			filters = append([]*listenerv3.Filter{admitOnly(sni, tp.admitted, v.Net, p)}, filters...)
		}
		lis.FilterChains = append(lis.FilterChains, &listenerv3.FilterChain{
			Name:             sni,
			FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{sni}},
			TransportSocket:  socket,
			Filters:          filters,
		})
	}
	return lis
}

// admitOnly is the RBAC network filter of a strict service's tunnel
// filter chain: a connection whose peer is not the gateway of an admitted
// importer (one whose cluster selection includes this member) is closed.
// The sending gateways already leave this member out when they may not
// send (translate's tiers); this makes the border hold at the receiving
// end too, against a member's admin who dials the tunnel with their own
// gateway identity. None admitted: every connection is closed.
func admitOnly(sni string, admitted []mcs.ClusterID, t *Topology, p packer) *listenerv3.Filter {
	policies := map[string]*rbacv3.Policy{}
	if len(admitted) > 0 {
		var principals []*rbacv3.Principal
		for _, m := range t.peerMatchers(admitted) {
			principals = append(principals, &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
				Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m.GetMatcher()},
			}})
		}
		policies["admitted-importers"] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  principals,
		}
	}
	return &listenerv3.Filter{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: p.any(&rbacnetworkv3.RBAC{
		StatPrefix: "strict:" + sni,
		Rules:      &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: policies},
	})}}
}

// toCluster is the network filter that sends a connection to a cluster:
// for a port whose appProtocol is HTTP an HTTP connection manager (each
// request balanced on its own, and retried on another endpoint when one
// refuses), else, or for a passthrough import, tcp_proxy. Each request
// or connection is logged to log.
func toCluster(cluster string, port *mcs.ImportPort, affinity, passthrough bool, log []*accesslogv3.AccessLog, p packer) *listenerv3.Filter {
	if isHTTP(port.AppProtocol) && !passthrough {
		hcm := httpConnectionManager(cluster, "", p)
		hcm.AccessLog = log
		hcm.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(GatewayIdleTimeout)}
		route := routeTo(cluster, sourceIPHash(affinity))
		route.GetRoute().RetryPolicy = gatewayRetry()
		// Not validated against the known clusters: an inline route
		// config is by default (RDS's is not), and a listener that
		// reaches Envoy before its cluster is then rejected, and stays
		// rejected until the listeners change again (over ADS, a new
		// cluster waits for Envoy to finish warming the previous ones,
		// while the listener naming it goes out at once). Unvalidated,
		// the route answers 503 for the moment the cluster is on its way.
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:             cluster,
			VirtualHosts:     []*routev3.VirtualHost{{Name: cluster, Domains: []string{"*"}, Routes: []*routev3.Route{route}}},
			ValidateClusters: wrapperspb.Bool(false),
		}}
		return &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: p.any(hcm)}}
	}
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: p.any(&tcpproxyv3.TcpProxy{
		StatPrefix:       cluster,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
		IdleTimeout:      durationpb.New(GatewayIdleTimeout),
		AccessLog:        log,
	})}}
}

// relays reports whether a gateway view relays a port for its member's
// pods without a proxy: some member serving it is on another network and
// has gateway addresses (the write-back then lists the view's gateway
// pods on the port's relay port: mcs.EndpointSlicesFor).
func relays(p *mcs.ImportPort, v View) bool {
	t := v.Net
	if v.Role != RoleGateway || t == nil || p.RelayPort == 0 {
		return false
	}
	mine := t.Members[v.Cluster].Network
	return slices.ContainsFunc(p.Clusters, func(c mcs.ClusterID) bool {
		return t.Members[c].Network != mine && len(t.Members[c].Gateways) > 0
	})
}

// relayListener is a gateway's listener on a port's relay port: its
// member's pods without a proxy, sent there by kube-proxy, reach the
// port's cluster (the member's own endpoints first, then the other
// networks' through their gateways).
func relayListener(key mcs.ServiceKey, port *mcs.ImportPort, affinity, passthrough bool, v View, p packer) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: RelayListenerName(port.RelayPort),
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       v.listenAddress(),
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port.RelayPort)}, //nolint:gosec // 20000-29999
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{toCluster(ClusterName(key, port.Port), port, affinity, passthrough, trafficLog(v, p), p)}}},
	}
}

// tunnelPort is one port a tunnel listener serves.
type tunnelPort struct {
	key                   mcs.ServiceKey
	port                  *mcs.ImportPort
	affinity, passthrough bool
	// strict is set for a service under a strict cluster selection: only
	// the gateways of admitted (the importers whose selection includes
	// this member) open its tunnel.
	strict   bool
	admitted []mcs.ClusterID
}

// isHTTP reports whether a port's appProtocol says it speaks HTTP (its
// tunnel then balances requests, not connections).
func isHTTP(appProtocol *string) bool {
	if appProtocol == nil {
		return false
	}
	switch *appProtocol {
	case "http", "kubernetes.io/http":
		return true
	}
	return isHTTP2(appProtocol)
}

// problem appends a member's problem to a reason.
func problem(p string) string {
	if p == "" {
		return ""
	}
	return ": " + p
}
