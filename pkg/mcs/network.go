package mcs

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The east-west gateway of a member is a Service labelled LabelGateway
// ("true") in front of the member's east-west Envoys, in the member's
// gateway namespace (Options.GatewayNamespace: the operator's, where the
// chart installs the gateways; labelled Services elsewhere are ignored
// and reported). Other networks reach
// the member at its addresses: the load balancer's (IPs and host names;
// Envoy resolves host names, the control plane never does), else its
// externalIPs, on its port named TunnelPortName, else DefaultTunnelPort.
//
// In-cluster clients without a proxy (proxyless gRPC) reach other networks
// through their own member's gateways: at the gateway Service's cluster IP,
// on its port named GatewayHTTPPortName, else DefaultGatewayHTTPPort (the
// gateways' Host-routed HTTP listener). The tunnel port and the HTTP port
// may be on two labelled Services (deploy/kubernetes/eastwest-gateway.yaml:
// a LoadBalancer for the tunnel, a ClusterIP Service for the HTTP port,
// which must not be reachable from outside).
//
// The gateways' certificate for tunnels (cert-manager's layout: tls.crt,
// tls.key, ca.crt) is the TLS Secret the gateway Service's
// AnnotationTunnelSecret names in its namespace, else DefaultTunnelSecret.
const (
	LabelGateway            = "eastwest.io/east-west-gateway"
	DefaultGatewayNamespace = "eastwest-system"
	TunnelPortName          = "tunnel"
	DefaultTunnelPort       = 15443
	GatewayHTTPPortName     = "http"
	DefaultGatewayHTTPPort  = 15080
	AnnotationTunnelSecret  = "eastwest.io/tunnel-secret" //nolint:gosec // the name of an annotation, not a credential
	DefaultTunnelSecret     = "eastwest-tunnel"           //nolint:gosec // the name of a Secret, not a credential
	// MaxGatewayAddresses bounds a member's gateway addresses (IPs and
	// host names together, over all its gateway Services), and
	// MaxGatewayHostNames its host names: every gateway of every other
	// network gets one endpoint per address in every service's cluster
	// (2,000 externalIPs turned 401 endpoints into 800,402), and each host
	// name is a DNS lookup. The first ones (in the Service's order) are
	// used; the rest is reported.
	MaxGatewayAddresses = 16
	MaxGatewayHostNames = 4
)

// GatewayAddress is where a member's east-west gateways take traffic
// tunnelled from other networks.
type GatewayAddress struct {
	// Address is an IP address or a DNS name.
	Address string `json:"address"`
	Port    int32  `json:"port"`
	// Service is the gateway Service (namespace/name) it comes from.
	Service string `json:"service"`
}

// isGateway reports whether a Service is a member's east-west gateway.
func isGateway(svc *corev1.Service) bool { return svc.Labels[LabelGateway] == "true" }

// gatewayAddresses reads a gateway Service's addresses, or why it has
// none.
func gatewayAddresses(svc *corev1.Service) ([]GatewayAddress, string) {
	var port int32
	for _, p := range svc.Spec.Ports {
		if p.Name == TunnelPortName || (port == 0 && p.Port == DefaultTunnelPort) {
			port = p.Port
		}
	}
	name := svc.Namespace + "/" + svc.Name
	if port == 0 {
		if localGateway(svc) != nil {
			return nil, "" // the in-cluster Service of the gateways (their HTTP port only)
		}
		return nil, fmt.Sprintf("gateway Service %s has no port named %q or numbered %d", name, TunnelPortName, DefaultTunnelPort)
	}
	var hosts []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		switch {
		case in.IP != "":
			hosts = append(hosts, in.IP)
		case in.Hostname != "":
			hosts = append(hosts, in.Hostname)
		}
	}
	if len(hosts) == 0 {
		hosts = svc.Spec.ExternalIPs
	}
	if len(hosts) == 0 {
		return nil, fmt.Sprintf("gateway Service %s has no load balancer address and no externalIPs yet", name)
	}
	var out []GatewayAddress
	names, dropped := 0, 0
	for _, h := range hosts {
		a := GatewayAddress{Address: h, Port: port, Service: name}
		if slices.Contains(out, a) {
			continue
		}
		isName := net.ParseIP(h) == nil
		if len(out) >= MaxGatewayAddresses || isName && names >= MaxGatewayHostNames {
			dropped++
			continue
		}
		if isName {
			names++
		}
		out = append(out, a)
	}
	if dropped > 0 {
		return out, fmt.Sprintf("gateway Service %s: %d address(es) left out (at most %d, of which %d host names)", name, dropped, MaxGatewayAddresses, MaxGatewayHostNames)
	}
	return out, ""
}

// gatewayService is what the Store keeps of a gateway Service.
type gatewayService struct {
	addresses []GatewayAddress
	problem   string
	secret    string // namespace/name of the tunnel Secret
	local     *GatewayAddress
}

// localGateway is where a gateway Service takes its own member's HTTP
// clients: its cluster IP and HTTP port (nil without either).
func localGateway(svc *corev1.Service) *GatewayAddress {
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return nil
	}
	var port int32
	for _, p := range svc.Spec.Ports {
		if p.Name == GatewayHTTPPortName || (port == 0 && p.Port == DefaultGatewayHTTPPort) {
			port = p.Port
		}
	}
	if port == 0 {
		return nil
	}
	return &GatewayAddress{Address: ip, Port: port, Service: svc.Namespace + "/" + svc.Name}
}

// tunnelSecret is the namespace/name of a gateway Service's tunnel Secret.
func tunnelSecret(svc *corev1.Service) string {
	name := svc.Annotations[AnnotationTunnelSecret]
	if name == "" {
		name = DefaultTunnelSecret
	}
	return svc.Namespace + "/" + name
}

// gatewayInfo fills a member's ClusterInfo with its gateway addresses
// (by Service), its tunnel Secret and in-cluster address (the first
// gateway Service's), and returns the problems of its gateway Services.
func (m *member) gatewayInfo(info *ClusterInfo) []string {
	var problems []string
	names := 0
	for _, k := range slices.SortedFunc(maps.Keys(m.gateways), ServiceKey.Compare) {
		g := m.gateways[k]
		for _, a := range g.addresses {
			isName := net.ParseIP(a.Address) == nil
			if len(info.Gateways) >= MaxGatewayAddresses || isName && names >= MaxGatewayHostNames {
				problems = append(problems, fmt.Sprintf("gateway Service %s: address %s left out (a member has at most %d, of which %d host names)", g.addresses[0].Service, a.Address, MaxGatewayAddresses, MaxGatewayHostNames))
				continue
			}
			if isName {
				names++
			}
			info.Gateways = append(info.Gateways, a)
		}
		if info.TunnelSecret == "" {
			info.TunnelSecret = g.secret
		}
		if info.LocalGateway == nil {
			info.LocalGateway = g.local
		}
		for _, sl := range m.slices[k] {
			for e := range sl.All() {
				if e.Ready {
					info.GatewayPods = append(info.GatewayPods, e.Addresses...)
				}
			}
		}
		if g.problem != "" {
			problems = append(problems, g.problem)
		}
	}
	slices.Sort(info.GatewayPods)
	info.GatewayPods = slices.Compact(info.GatewayPods)
	for _, k := range slices.SortedFunc(maps.Keys(m.ignored), ServiceKey.Compare) {
		info.IgnoredGateways = append(info.IgnoredGateways, k.String())
	}
	return problems
}

// reportUnreachable sets GatewayError on the members other networks cannot
// reach, when the ClusterSet spans more than one network: no usable
// gateway address (problems says why), or addresses but no usable tunnel
// certificate (noTunnel says why; the gateways then have no tunnel
// listener).
func reportUnreachable(infos []ClusterInfo, problems [][]string, noTunnel []string) {
	networks := map[string]bool{}
	for _, c := range infos {
		if c.ID != "" {
			networks[c.Network] = true
		}
	}
	if len(networks) < 2 {
		return
	}
	for i := range infos {
		c := &infos[i]
		if c.ID == "" {
			continue
		}
		if len(c.Gateways) > 0 {
			if noTunnel[i] != "" {
				c.GatewayError = fmt.Sprintf("network %s cannot tunnel to this member (%s): other networks do not get its endpoints", NetworkName(c.Network), noTunnel[i])
			}
			continue
		}
		why := "no Service labelled " + LabelGateway + "=true in the gateway namespace"
		if len(problems[i]) > 0 {
			why = strings.Join(problems[i], "; ")
		}
		c.GatewayError = fmt.Sprintf("network %s has no east-west gateway address (%s): other networks do not get this member's endpoints", NetworkName(c.Network), why)
	}
}

func equalClusterInfos(a, b []ClusterInfo) bool {
	return slices.EqualFunc(a, b, func(x, y ClusterInfo) bool {
		return x.Member == y.Member && x.ID == y.ID && x.ClusterSet == y.ClusterSet && x.Error == y.Error &&
			x.Network == y.Network && slices.Equal(x.Gateways, y.Gateways) && x.GatewayError == y.GatewayError && slices.Equal(x.GatewayWarnings, y.GatewayWarnings) &&
			x.TunnelSecret == y.TunnelSecret && x.TunnelError == y.TunnelError && (x.LocalGateway == nil) == (y.LocalGateway == nil) &&
			(x.LocalGateway == nil || *x.LocalGateway == *y.LocalGateway) && slices.Equal(x.GatewayPods, y.GatewayPods) &&
			slices.Equal(x.IgnoredGateways, y.IgnoredGateways) && maps.Equal(x.Properties, y.Properties) &&
			slices.Equal(x.PropertyWarnings, y.PropertyWarnings) && (x.Profile == nil) == (y.Profile == nil) && (x.Profile == nil || *x.Profile == *y.Profile)
	})
}

// ConditionReachable is the ServiceExport condition eastwest adds, in a
// ClusterSet that spans networks, to say whether other networks reach the
// exporting member's endpoints (through its east-west gateways).
const ConditionReachable = "eastwest.io/Reachable"

// ReachableCondition is the ConditionReachable of the exports of member c
// (a ClusterSet member's ID), or nil when the ClusterSet is one network.
func ReachableCondition(infos []ClusterInfo, c ClusterID, generation int64) *metav1.Condition {
	networks := map[string]bool{}
	var mine *ClusterInfo
	for i := range infos {
		if infos[i].ID == "" {
			continue
		}
		networks[infos[i].Network] = true
		if infos[i].ID == c {
			mine = &infos[i]
		}
	}
	if len(networks) < 2 || mine == nil {
		return nil
	}
	cond := &metav1.Condition{Type: ConditionReachable, Status: metav1.ConditionTrue, Reason: "GatewayAddresses", ObservedGeneration: generation,
		Message: fmt.Sprintf("other networks reach network %s through %d east-west gateway address(es)", NetworkName(mine.Network), len(mine.Gateways))}
	if mine.GatewayError != "" {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "NoGatewayAddress", mine.GatewayError
	}
	return cond
}
