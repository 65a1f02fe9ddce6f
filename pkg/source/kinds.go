package source

import (
	"reflect"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// kind is one kind of object the sources read: the one table that
// decoding, the folder, the informers' events and deletes all read.
type kind struct {
	gvk schema.GroupVersionKind
	// new returns an empty object of the kind.
	new        func() metav1.Object
	namespaced bool
	// rank orders a member's events: properties (the cluster's ID),
	// namespaces, services and exports before what refers to them.
	rank int
	// name validates a name as the apiserver does for the kind.
	name func(string) []string
}

// kinds are the kinds eastwest reads, each version it reads them in.
var kinds = []kind{
	{gvProperty, func() metav1.Object { return &mcs.ClusterProperty{} }, false, 0, validation.IsDNS1123Subdomain},
	{gvNamespace, func() metav1.Object { return &corev1.Namespace{} }, false, 1, validation.IsDNS1123Label},
	{gvService, func() metav1.Object { return &corev1.Service{} }, true, 2, validation.IsDNS1035Label},
	{gvExportV1b1, func() metav1.Object { return &mcsv1b1.ServiceExport{} }, true, 3, validation.IsDNS1035Label},
	{gvExportV1a1, func() metav1.Object { return &mcsv1a1.ServiceExport{} }, true, 3, validation.IsDNS1035Label},
	{gvEndpointSlice, func() metav1.Object { return &discoveryv1.EndpointSlice{} }, true, 4, validation.IsDNS1123Subdomain},
	{gvGatewayClass, func() metav1.Object { return &gwapiv1.GatewayClass{} }, false, 4, validation.IsDNS1123Subdomain},
	{gvGateway, func() metav1.Object { return &gwapiv1.Gateway{} }, true, 4, validation.IsDNS1123Subdomain},
	{gvHTTPRoute, func() metav1.Object { return &gwapiv1.HTTPRoute{} }, true, 4, validation.IsDNS1123Subdomain},
	{gvGRPCRoute, func() metav1.Object { return &gwapiv1.GRPCRoute{} }, true, 4, validation.IsDNS1123Subdomain},
	// v1beta1 and v1 ReferenceGrants have the same fields.
	{gvGrantV1, func() metav1.Object { return &gwapiv1.ReferenceGrant{} }, true, 4, validation.IsDNS1123Subdomain},
	{gvGrantV1b1, func() metav1.Object { return &gwapiv1.ReferenceGrant{} }, true, 4, validation.IsDNS1123Subdomain},
	// A Secret decodes with the type its document gives (none: Opaque,
	// refused); the delete stub of a TLS Secret is made in stub.
	{gvSecret, func() metav1.Object { return &corev1.Secret{} }, true, 4, validation.IsDNS1123Subdomain},
}

var (
	kindByGVK  = map[schema.GroupVersionKind]kind{}
	kindByType = map[reflect.Type]kind{} // the first (preferred) version of each Go type
	rankByKind = map[string]int{}
)

func init() {
	for _, k := range kinds {
		kindByGVK[k.gvk] = k
		t := reflect.TypeOf(k.new())
		if _, ok := kindByType[t]; !ok {
			kindByType[t] = k
		}
		rankByKind[k.gvk.Kind] = k.rank
	}
}

// kindOfObject returns the kind of a Go object eastwest reads, the
// versions of a kind (ServiceExport v1alpha1 and v1beta1) sharing one
// group and kind.
func kindOfObject(o any) (kind, bool) {
	k, ok := kindByType[reflect.TypeOf(o)]
	return k, ok
}
