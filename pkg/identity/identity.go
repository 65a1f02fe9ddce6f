package identity

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultTrustDomain is the trust domain of eastwest's identities when
// the operator names none.
const DefaultTrustDomain = "eastwest.io"

// The roles an identity may name: the node contract's node.metadata.role
// (an xDS client of a member cluster), and two ClusterSet-wide roles of
// people and tools on the debug endpoint, whose identities name no
// cluster (spiffe://<trust domain>/clusterset/<clusterset>/role/<role>):
// the operator (everything) and metrics (Prometheus: /metrics alone).
const (
	RoleClient     = "client"
	RoleGateway    = "gateway"
	RoleGatewayAPI = "gateway-api"
	RoleOperator   = "operator"
	RoleMetrics    = "metrics"
)

// ID is one parsed identity.
type ID struct {
	TrustDomain string
	ClusterSet  string
	Cluster     string
	Role        string
	// Gateway is <namespace>/<name> of the Gateway a gateway-api identity
	// implements; empty for the other roles.
	Gateway string
}

// Parse reads an identity URI. It fails for anything that is not a valid
// SPIFFE ID of the shape the package documents.
func Parse(s string) (ID, error) {
	sid, err := spiffeid.FromString(s)
	if err != nil {
		return ID{}, fmt.Errorf("%q is not a SPIFFE ID: %w", s, err)
	}
	seg := strings.Split(strings.TrimPrefix(sid.Path(), "/"), "/")
	bad := func(why string) (ID, error) {
		return ID{}, fmt.Errorf("%q is not an eastwest identity (spiffe://DOMAIN/clusterset/SET/cluster/ID/role/ROLE[/gateway/NS/NAME] or spiffe://DOMAIN/clusterset/SET/role/operator|metrics): %s", s, why)
	}
	if len(seg) == 4 && seg[0] == "clusterset" && seg[2] == "role" {
		id := ID{TrustDomain: sid.TrustDomain().Name(), ClusterSet: seg[1], Role: seg[3]}
		if id.Role != RoleOperator && id.Role != RoleMetrics {
			return bad(fmt.Sprintf("a ClusterSet-wide role is %s or %s, not %q", RoleOperator, RoleMetrics, id.Role))
		}
		return id, nil
	}
	if len(seg) < 6 || seg[0] != "clusterset" || seg[2] != "cluster" || seg[4] != "role" {
		return bad("the path does not start clusterset/SET/cluster/ID/role/ROLE")
	}
	id := ID{TrustDomain: sid.TrustDomain().Name(), ClusterSet: seg[1], Cluster: seg[3], Role: seg[5]}
	switch {
	case id.Role == RoleGatewayAPI && len(seg) == 9 && seg[6] == "gateway":
		id.Gateway = seg[7] + "/" + seg[8]
	case id.Role == RoleGatewayAPI:
		return bad("role gateway-api ends /gateway/NAMESPACE/NAME")
	case id.Role != RoleClient && id.Role != RoleGateway:
		// (operator and metrics name no cluster)
		return bad(fmt.Sprintf("role %q is not %s, %s or %s", id.Role, RoleClient, RoleGateway, RoleGatewayAPI))
	case len(seg) != 6:
		return bad("nothing may follow the role " + id.Role)
	}
	return id, nil
}

// String is the identity's URI. It is the inverse of Parse for every ID
// Parse returns.
func (id ID) String() string {
	td := id.TrustDomain
	if td == "" {
		td = DefaultTrustDomain
	}
	if id.Cluster == "" && (id.Role == RoleOperator || id.Role == RoleMetrics) {
		return "spiffe://" + td + "/clusterset/" + id.ClusterSet + "/role/" + id.Role
	}
	s := "spiffe://" + td + "/clusterset/" + id.ClusterSet + "/cluster/" + id.Cluster + "/role/" + id.Role
	if id.Role == RoleGatewayAPI {
		s += "/gateway/" + id.Gateway
	}
	return s
}
