package controlplane

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// The node contract: how an xDS client says who it is.
//
//	node.id              unique per client
//	node.cluster         the ID of the member cluster the client runs in
//	node.metadata.role   "gateway" (east-west Envoy) or "client" (proxyless gRPC; the default)
const (
	// MetadataRole is the node metadata key naming the client's role.
	MetadataRole = "role"
)

// ParseNode reads the node contract. It fails for a node that declares no
// cluster or an unknown role; whether the cluster is a member is checked
// separately, since a cluster may join after its clients connect.
func ParseNode(n *corev3.Node) (mcs.ClusterID, translate.Role, error) {
	if n == nil {
		return "", "", fmt.Errorf("the request has no node")
	}
	if n.GetCluster() == "" {
		return "", "", fmt.Errorf("node %q: node.cluster is empty; set it to the ID of the member cluster the client runs in", n.GetId())
	}
	role := translate.RoleClient
	if v, ok := n.GetMetadata().GetFields()[MetadataRole]; ok {
		role = translate.Role(v.GetStringValue())
	}
	if role != translate.RoleClient && role != translate.RoleGateway {
		return "", "", fmt.Errorf("node %q: node.metadata.role %q is not %q or %q", n.GetId(), role, translate.RoleClient, translate.RoleGateway)
	}
	return mcs.ClusterID(n.GetCluster()), role, nil
}

// ViewName is the cache view of a member cluster and role.
func ViewName(c mcs.ClusterID, r translate.Role) string {
	return translate.View{Cluster: c, Role: r}.String()
}

// NodeView is the cache's NodeViewFunc.
func NodeView(n *corev3.Node) (string, error) {
	c, r, err := ParseNode(n)
	if err != nil {
		return "", err
	}
	return ViewName(c, r), nil
}
