package translate

import (
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/types"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// Every Envoy name, stat prefix and host name eastwest makes is made here;
// tests and other packages call these functions rather than building names.

// ClusterSetDomain is the DNS zone of multi-cluster services (KEP-1645).
const ClusterSetDomain = "svc.clusterset.local"

// Host is a service's ClusterSet host name, <svc>.<ns>.svc.clusterset.local.
func Host(key mcs.ServiceKey) string {
	return key.Name + "." + key.Namespace + "." + ClusterSetDomain
}

// HostPort is Host with a port: the xDS target gRPC clients dial
// (xds:///<svc>.<ns>.svc.clusterset.local:<port>), and the name of the API
// listener, route configuration and cluster made for that port.
func HostPort(key mcs.ServiceKey, port int32) string {
	return Host(key) + ":" + strconv.Itoa(int(port))
}

// ClusterName names the Envoy cluster (and its EDS resource) of one
// ServiceImport port.
func ClusterName(key mcs.ServiceKey, port int32) string { return HostPort(key, port) }

// ListenerName names the API listener of one ServiceImport port.
func ListenerName(key mcs.ServiceKey, port int32) string { return HostPort(key, port) }

// RouteName names the route configuration behind a port's API listener.
func RouteName(key mcs.ServiceKey, port int32) string { return HostPort(key, port) }

// GatewayListenerName names an east-west gateway's HTTP listener.
func GatewayListenerName(port uint32) string { return fmt.Sprintf("eastwest-gateway-http-%d", port) }

// GatewayRouteName names the route configuration of a gateway's HTTP listener.
func GatewayRouteName(port uint32) string { return GatewayListenerName(port) }

// GatewayUnknownHostName is the gateway's catch-all virtual host, which
// answers a Host that names no ClusterSet service port with a 404.
const GatewayUnknownHostName = "eastwest-unknown-host"

// VirtualHostName names the gateway virtual host of one ServiceImport port.
func VirtualHostName(key mcs.ServiceKey, port int32) string { return HostPort(key, port) }

// StatPrefix is the stat prefix of a listener's HttpConnectionManager.
func StatPrefix(listener string) string { return listener }

// Locality names a member cluster in Envoy localities: the region is the
// cluster ID, the zone its endpoints' zone when they all share one.
func Locality(cluster mcs.ClusterID) string { return string(cluster) }

// StatName is the name an Envoy's stats give a service port's cluster
// (its alt_stat_name): <namespace>/<name>/<port>. Cluster names hold
// dots, which Envoy's tag extraction takes for separators; these hold
// none (namespaces and Service names are DNS labels), so that Prometheus
// sees envoy_cluster_name="shop/cart/80". TunnelStatName is a tunnel
// listener's cluster of the same port.
func StatName(key mcs.ServiceKey, port int32) string {
	return key.Namespace + "/" + key.Name + "/" + strconv.Itoa(int(port))
}

// TunnelStatName is StatName for a port's tunnel cluster.
func TunnelStatName(key mcs.ServiceKey, port int32) string { return "tunnel/" + StatName(key, port) }

// GatewayAPIView is the view name part of a Gateway: <namespace>/<name>.
func GatewayAPIView(gw types.NamespacedName) string { return gw.Namespace + "/" + gw.Name }

// GatewayAPIListenerName names the Envoy listener of a Gateway's port.
func GatewayAPIListenerName(gw types.NamespacedName, port int32) string {
	return fmt.Sprintf("gateway-api:%s/%s:%d", gw.Namespace, gw.Name, port)
}

// GatewayAPIRouteName names the route configuration of a Gateway's HTTP
// port (listener empty) or of one HTTPS listener (its own filter chain).
func GatewayAPIRouteName(gw types.NamespacedName, port int32, listener string) string {
	if listener == "" {
		return GatewayAPIListenerName(gw, port)
	}
	return GatewayAPIListenerName(gw, port) + "/" + listener
}

// GatewayAPIVirtualHostName names the virtual host of one hostname.
func GatewayAPIVirtualHostName(hostname string) string { return hostname }

// LocalClusterName names the Envoy cluster of a Service port in the
// view's own member cluster (a Gateway API backendRef of kind Service):
// <svc>.<ns>.svc.cluster.local:<port>.
func LocalClusterName(key mcs.ServiceKey, port int32) string {
	return key.Name + "." + key.Namespace + ".svc.cluster.local:" + strconv.Itoa(int(port))
}

// SecretName names the SDS secret of a TLS Secret.
func SecretName(s types.NamespacedName) string { return "secret:" + s.Namespace + "/" + s.Name }

// InvalidBackendCluster is the cluster a route's share for an invalid
// backendRef goes to. It is deliberately never published: Envoy answers
// requests for a missing cluster with the route's
// cluster_not_found_response_code, 500, which is what the Gateway API asks
// for an invalid backend's share of the weight.
const InvalidBackendCluster = "eastwest-invalid-backend"

// TunnelSNI is the TLS server name that asks a member's east-west gateway,
// through its tunnel listener, for one port of a service it exports:
// <port>.<svc>.<ns>.svc.clusterset.local. It names no DNS record; the
// first label (a number) cannot be a Service name, so it never collides
// with a ClusterSet host name.
func TunnelSNI(key mcs.ServiceKey, port int32) string {
	return strconv.Itoa(int(port)) + "." + Host(key)
}

// TunnelListenerName names an east-west gateway's tunnel listener.
func TunnelListenerName(port uint32) string { return fmt.Sprintf("eastwest-gateway-tunnel-%d", port) }

// TunnelClusterName names the cluster behind a tunnel listener's filter
// chain: the port's endpoints in the gateway's own member only, so that a
// tunnelled connection never goes through another gateway (no loops).
func TunnelClusterName(key mcs.ServiceKey, port int32) string { return "tunnel:" + HostPort(key, port) }

// The SDS secrets of an east-west gateway's tunnels: its certificate
// (the member's tunnel Secret) and the ClusterSet's trust bundle with the
// identities a peer gateway's certificate must carry.
const (
	TunnelCertificateSecret = "eastwest-tunnel-certificate"
	TunnelTrustSecret       = "eastwest-tunnel-trust"
)

// TunnelPeerSecret names the SDS secret that checks the gateways of one
// member when a gateway dials them: that member's trust anchor and its
// gateway identity alone (the peer is pinned to the member dialed).
func TunnelPeerSecret(member mcs.ClusterID) string { return "eastwest-tunnel-peer:" + string(member) }

// TunnelMatch is the key in an endpoint's envoy.transport_socket_match
// metadata, its value the member whose gateway the endpoint is; the
// transport socket match of that member (named TunnelMatch:<member>)
// sends the connection through a tunnel that accepts that member's
// gateways only.
const TunnelMatch = "eastwest-tunnel"

// RelayListenerName names a gateway's listener on a relay port (the
// port's connections from its member's pods without a proxy).
func RelayListenerName(port int32) string { return fmt.Sprintf("eastwest-gateway-relay-%d", port) }

// GatewaysDNSName names the STRICT_DNS cluster of a member's gateways that
// have host names, and the internal listener that a tunnel to them goes
// through (EDS carries IP addresses only).
func GatewaysDNSName(member mcs.ClusterID) string { return "eastwest-gateways:" + string(member) }
