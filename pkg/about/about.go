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

// GroupVersion is the About API group and version read.
var GroupVersion = schema.GroupVersion{Group: "about.k8s.io", Version: "v1alpha1"}

// ClusterProperty is the About API's cluster-scoped ClusterProperty
// (about.k8s.io/v1alpha1).
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
