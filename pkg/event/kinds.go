package event

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

	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// Stores says which stores keep a kind's objects.
type Stores int

// The stores.
const (
	// MCS is the MCS store (pkg/mcs): exports, Services, EndpointSlices,
	// Namespaces, ClusterProperties.
	MCS Stores = 1 << iota
	// Gateway is the Gateway API store (pkg/gatewayapi): Gateway API objects,
	// TLS Secrets and GatewayParameters, and the Namespaces and Services in
	// front of them.
	Gateway
)

// Kind is one kind of object the sources read: the one table that
// decoding, the folder, the informers' events and deletes, and the
// routing of events to stores all read.
type Kind struct {
	GVK schema.GroupVersionKind
	// New returns an empty object of the kind.
	New        func() metav1.Object
	Namespaced bool
	// Rank orders a member's events: properties (the cluster's ID),
	// namespaces, services and exports before what refers to them.
	Rank int
	// ValidName validates a name as the apiserver does for the kind.
	ValidName func(string) []string
	// Stores keep the kind's objects.
	Stores Stores
}

var (
	gvNamespace     = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
	gvService       = schema.GroupVersionKind{Version: "v1", Kind: "Service"}
	gvEndpointSlice = discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice")
	gvExportV1a1    = schema.GroupVersion{Group: mcsv1a1.GroupName, Version: mcsv1a1.GroupVersion.Version}.WithKind("ServiceExport")
	gvExportV1b1    = schema.GroupVersion{Group: mcsv1b1.GroupName, Version: mcsv1b1.GroupVersion.Version}.WithKind(mcsv1b1.ServiceExportKindName)
	gvProperty      = about.GroupVersion.WithKind("ClusterProperty")
	gvPropertyV1a1  = about.GroupVersionV1alpha1.WithKind("ClusterProperty")
	gvHTTPRoute     = schema.GroupVersion{Group: gwapiv1.GroupName, Version: "v1"}.WithKind("HTTPRoute")
	gvGRPCRoute     = schema.GroupVersion{Group: gwapiv1.GroupName, Version: "v1"}.WithKind("GRPCRoute")
	gvGatewayClass  = schema.GroupVersion{Group: gwapiv1.GroupName, Version: "v1"}.WithKind("GatewayClass")
	gvGateway       = schema.GroupVersion{Group: gwapiv1.GroupName, Version: "v1"}.WithKind("Gateway")
	gvGrantV1       = schema.GroupVersion{Group: gwapiv1.GroupName, Version: "v1"}.WithKind("ReferenceGrant")
	gvGrantV1b1     = schema.GroupVersion{Group: gwapiv1.GroupName, Version: "v1beta1"}.WithKind("ReferenceGrant")
	gvSecret        = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}
	gvParameters    = provision.GroupVersion.WithKind(provision.KindGatewayParameters)
)

// Kinds are the kinds eastwest reads, each version it reads them in.
var Kinds = []Kind{
	// v1beta1 and v1alpha1 ClusterProperties have the same fields.
	{gvProperty, func() metav1.Object { return &about.ClusterProperty{} }, false, 0, validation.IsDNS1123Subdomain, MCS},
	{gvPropertyV1a1, func() metav1.Object { return &about.ClusterProperty{} }, false, 0, validation.IsDNS1123Subdomain, MCS},
	{gvNamespace, func() metav1.Object { return &corev1.Namespace{} }, false, 1, validation.IsDNS1123Label, MCS | Gateway},
	{gvService, func() metav1.Object { return &corev1.Service{} }, true, 2, validation.IsDNS1035Label, MCS | Gateway},
	{gvExportV1b1, func() metav1.Object { return &mcsv1b1.ServiceExport{} }, true, 3, validation.IsDNS1035Label, MCS},
	{gvExportV1a1, func() metav1.Object { return &mcsv1a1.ServiceExport{} }, true, 3, validation.IsDNS1035Label, MCS},
	{gvEndpointSlice, func() metav1.Object { return &discoveryv1.EndpointSlice{} }, true, 4, validation.IsDNS1123Subdomain, MCS},
	// eastwest's GatewayParameters, before the classes and Gateways that
	// name them.
	{gvParameters, func() metav1.Object { return &provision.GatewayParameters{} }, true, 3, validation.IsDNS1123Subdomain, Gateway},
	{gvGatewayClass, func() metav1.Object { return &gwapiv1.GatewayClass{} }, false, 4, validation.IsDNS1123Subdomain, Gateway},
	{gvGateway, func() metav1.Object { return &gwapiv1.Gateway{} }, true, 4, validation.IsDNS1123Subdomain, Gateway},
	{gvHTTPRoute, func() metav1.Object { return &gwapiv1.HTTPRoute{} }, true, 4, validation.IsDNS1123Subdomain, Gateway},
	{gvGRPCRoute, func() metav1.Object { return &gwapiv1.GRPCRoute{} }, true, 4, validation.IsDNS1123Subdomain, Gateway},
	// v1beta1 and v1 ReferenceGrants have the same fields.
	{gvGrantV1, func() metav1.Object { return &gwapiv1.ReferenceGrant{} }, true, 4, validation.IsDNS1123Subdomain, Gateway},
	{gvGrantV1b1, func() metav1.Object { return &gwapiv1.ReferenceGrant{} }, true, 4, validation.IsDNS1123Subdomain, Gateway},
	// A Secret decodes with the type its document gives (none: Opaque,
	// refused by the folder); the Gateway API store keeps TLS Secrets only.
	{gvSecret, func() metav1.Object { return &corev1.Secret{} }, true, 4, validation.IsDNS1123Subdomain, Gateway},
}

var (
	kindByGVK  = map[schema.GroupVersionKind]Kind{}
	kindByType = map[reflect.Type]Kind{} // the first (preferred) version of each Go type
	rankByKind = map[string]int{}
)

func init() {
	for _, k := range Kinds {
		kindByGVK[k.GVK] = k
		t := reflect.TypeOf(k.New())
		if _, ok := kindByType[t]; !ok {
			kindByType[t] = k
		}
		rankByKind[k.GVK.Kind] = k.Rank
	}
}

// KindFor returns the kind of a group, version and kind.
func KindFor(gvk schema.GroupVersionKind) (Kind, bool) {
	k, ok := kindByGVK[gvk]
	return k, ok
}

// KindOf returns the kind of a Go object eastwest reads, the versions of
// a kind (ServiceExport v1alpha1 and v1beta1) sharing one group and kind.
func KindOf(o any) (Kind, bool) {
	k, ok := kindByType[reflect.TypeOf(o)]
	return k, ok
}

// Rank is the rank of a kind by name; kinds not read rank last.
func Rank(kind string) int {
	if r, ok := rankByKind[kind]; ok {
		return r
	}
	return len(Kinds)
}

// StoresOf returns the stores that keep an object (none for a kind
// eastwest does not read).
func StoresOf(o metav1.Object) Stores {
	k, _ := KindOf(o)
	return k.Stores
}
