package controlplane

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// The node contract: how an xDS client says who it is.
//
//	node.id              unique per client
//	node.cluster         the ID of the member cluster the client runs in
//	node.metadata.role   "gateway" (east-west Envoy), "gateway-api" (an Envoy
//	                     implementing a Gateway API Gateway) or "client"
//	                     (proxyless gRPC; the default)
//	node.metadata.gateway with role gateway-api: the Gateway, <namespace>/<name>
//	node.locality.sub_zone the Kubernetes zone the client runs in (its node's
//	                     topology.kubernetes.io/zone), optional, for roles
//	                     client and gateway: services whose trafficDistribution
//	                     prefers the client's zone send it to its zone's
//	                     endpoints first. node.locality.zone is the member,
//	                     for Envoy's stats (--service-zone).
const (
	// MetadataRole is the node metadata key naming the client's role.
	MetadataRole = "role"
	// MetadataGateway is the node metadata key naming the Gateway a
	// gateway-api node implements.
	MetadataGateway = "gateway"
)

// ParseNode reads the node contract. It fails for a node that declares no
// cluster, an unknown role, or a gateway-api role without a Gateway;
// whether the cluster is a member (and the Gateway one of ours) is checked
// separately, since either may appear after the client connects.
func ParseNode(n *corev3.Node) (translate.View, error) {
	if n == nil {
		return translate.View{}, fmt.Errorf("the request has no node")
	}
	if n.GetCluster() == "" {
		return translate.View{}, fmt.Errorf("node %q: node.cluster is empty; set it to the ID of the member cluster the client runs in", n.GetId())
	}
	v := translate.View{Cluster: mcs.ClusterID(n.GetCluster()), Role: translate.RoleClient}
	fields := n.GetMetadata().GetFields()
	if f, ok := fields[MetadataRole]; ok {
		v.Role = translate.Role(f.GetStringValue())
	}
	switch v.Role {
	case translate.RoleClient, translate.RoleGateway:
		if z := n.GetLocality().GetSubZone(); z != "" {
			if errs := validation.IsValidLabelValue(z); len(errs) > 0 {
				return translate.View{}, fmt.Errorf("node %q: node.locality.sub_zone %q is not a zone (a label value): %s", n.GetId(), z, errs[0])
			}
			v.Zone = z
		}
	case translate.RoleGatewayAPI:
		v.Gateway = fields[MetadataGateway].GetStringValue()
		ns, name, ok := strings.Cut(v.Gateway, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return translate.View{}, fmt.Errorf("node %q: role %q needs node.metadata.gateway set to <namespace>/<name> of the Gateway, not %q", n.GetId(), v.Role, v.Gateway)
		}
	default:
		return translate.View{}, fmt.Errorf("node %q: node.metadata.role %q is not %q, %q or %q", n.GetId(), v.Role, translate.RoleClient, translate.RoleGateway, translate.RoleGatewayAPI)
	}
	return v, nil
}

// ViewName is the cache view of a member cluster and role.
func ViewName(c mcs.ClusterID, r translate.Role) string {
	return translate.View{Cluster: c, Role: r}.String()
}

// NodeView is the cache's NodeViewFunc.
func NodeView(n *corev3.Node) (string, error) {
	v, err := ParseNode(n)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}
