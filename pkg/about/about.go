package about

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The About API (KEP-2149) ClusterProperty names that the ClusterSet uses.
const (
	// PropertyClusterID is the ClusterProperty whose value is the member's
	// ClusterSet-unique ID.
	PropertyClusterID = "cluster.clusterset.k8s.io"
	// PropertyClusterSet is the ClusterProperty whose value names the
	// ClusterSet the member belongs to.
	PropertyClusterSet = "clusterset.k8s.io"
)

// GroupVersion is the About API version read where a member serves it
// (KEP-2149 beta); GroupVersionV1alpha1 where it serves only the alpha.
// Both carry the same fields.
var (
	GroupVersion         = schema.GroupVersion{Group: Group, Version: "v1beta1"}
	GroupVersionV1alpha1 = schema.GroupVersion{Group: Group, Version: "v1alpha1"}
)

// Group is the About API's group; Resource its ClusterProperty resource.
const (
	Group    = "about.k8s.io"
	Resource = "clusterproperties"
)

// ClusterProperty is the About API's cluster-scoped ClusterProperty
// (about.k8s.io v1beta1 or v1alpha1).
type ClusterProperty struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ClusterPropertySpec `json:"spec"`
}

// ClusterPropertySpec holds the property's value.
type ClusterPropertySpec struct {
	Value string `json:"value"`
}

// DeepCopyObject implements runtime.Object.
func (p *ClusterProperty) DeepCopyObject() runtime.Object {
	if p == nil {
		return nil
	}
	out := *p
	p.DeepCopyInto(&out.ObjectMeta)
	return &out
}

var _ runtime.Object = (*ClusterProperty)(nil)

// PropertyNetwork is eastwest's ClusterProperty naming the network a
// member's pods are on (KEP-2149 allows implementation properties):
// members on the same network reach each other's pods directly; members
// on different networks, through east-west gateways. Members without it
// share the default network.
const PropertyNetwork = "network.eastwest.io"

// Well-known properties eastwest reads beside the ClusterSet's own: a
// member's topology and jurisdiction, for the services' cluster selectors
// (KEP-5939) and the traffic view. Any other property a member declares
// is read as well and can be selected by its name; these are only the
// names eastwest's documentation, examples and dashboards use. A
// property's name is an object name (a DNS subdomain), so the node label
// topology.kubernetes.io/region cannot be one: KEP-5939's own examples
// name the region region.topology.k8s.io, and so does eastwest.
const (
	// PropertyRegion is the region a member's nodes run in (their
	// topology.kubernetes.io/region label's value).
	PropertyRegion = "region.topology.k8s.io"
	// PropertyZone is the zone of a member that runs in one zone (a member
	// spanning zones leaves it unset; its endpoints carry their zones).
	PropertyZone = "zone.topology.k8s.io"
	// PropertyJurisdiction is the legal jurisdiction a member's data stays
	// in (an ISO 3166 country code, or a union such as "EU"): what a
	// service bound by data residency selects on.
	PropertyJurisdiction = "jurisdiction.eastwest.io"
)
