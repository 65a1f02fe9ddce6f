package event

import (
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	cpv1a1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
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
// decoding, the folder, the members' informers and discovery, the
// informers' events and deletes, the supported-kinds text and the routing
// of events to stores all read. Adding a kind is adding a row.
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

	// How member clusters are read (pkg/source). Rows of one group and
	// kind are its versions in order of preference: a member is read in
	// the first version it serves.

	// Resource is the kind's resource name.
	Resource string
	// Client is the client the member's informer lists and watches with.
	Client Client
	// Required kinds must be served and readable, or the member is not
	// read at all (its connection fails, saying why). The others are
	// read where the member serves and grants them; Unread says what is
	// lost where it does not.
	Required bool
	Unread   string
	// LabelSelector and FieldSelector narrow what the informer lists
	// (and what a member must grant).
	LabelSelector, FieldSelector string
	// Note qualifies the kind in the supported-kinds text.
	Note string
}

// Client is how a kind is read from a member's apiserver.
type Client int

// The clients.
const (
	// Typed is the clientset of the kind's API group (protobuf for
	// Kubernetes' built-in kinds).
	Typed Client = iota
	// Dynamic is the dynamic client; objects are converted to New's type
	// before they are cached.
	Dynamic
	// Inventory kinds are not read from members: the member registry
	// reads them from the fleet's inventory in the control plane's own
	// cluster and gives each member its own (a ClusterProfile).
	Inventory
)

// OwnSlicesExcluded is the EndpointSlice informers' label selector: every
// slice but the MCS slices eastwest writes (endpointslice.kubernetes.io/
// managed-by = mcs.ControllerName, which pkg/source checks it names). The
// apiserver leaves them out: they would be dropped anyway, at the cost of
// a watch event, a decode and a cached copy each.
const OwnSlicesExcluded = discoveryv1.LabelManagedBy + "!=mcs-controller.eastwest.io"

// TLSSecrets is the Secret informers' field selector: Gateway listener
// certificates, the only Secrets read.
const TLSSecrets = "type=kubernetes.io/tls" //nolint:gosec // a field selector, not a credential

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
	gvProfile       = cpv1a1.GroupVersion.WithKind("ClusterProfile")
)

// Kinds are the kinds eastwest reads, each version it reads them in.
var Kinds = []Kind{
	// A member's ClusterProfile (KEP-4322), from the inventory: its
	// properties and health, before the member's own ClusterProperties.
	{GVK: gvProfile, New: func() metav1.Object { return &cpv1a1.ClusterProfile{} }, Namespaced: true, Rank: 0, ValidName: validation.IsDNS1123Subdomain, Stores: MCS,
		Resource: "clusterprofiles", Client: Inventory},
	// v1beta1 and v1alpha1 ClusterProperties have the same fields.
	{GVK: gvProperty, New: func() metav1.Object { return &about.ClusterProperty{} }, Rank: 0, ValidName: validation.IsDNS1123Subdomain, Stores: MCS,
		Resource: about.Resource, Client: Dynamic, Unread: "its ClusterProperties (cluster ID, ClusterSet, network, region, zone) are not read: it takes its ID from the configuration"},
	{GVK: gvPropertyV1a1, New: func() metav1.Object { return &about.ClusterProperty{} }, Rank: 0, ValidName: validation.IsDNS1123Subdomain, Stores: MCS,
		Resource: about.Resource, Client: Dynamic, Unread: "its ClusterProperties (cluster ID, ClusterSet, network, region, zone) are not read: it takes its ID from the configuration"},
	{GVK: gvNamespace, New: func() metav1.Object { return &corev1.Namespace{} }, Rank: 1, ValidName: validation.IsDNS1123Label, Stores: MCS | Gateway,
		Resource: "namespaces", Required: true},
	{GVK: gvService, New: func() metav1.Object { return &corev1.Service{} }, Namespaced: true, Rank: 2, ValidName: validation.IsDNS1035Label, Stores: MCS | Gateway,
		Resource: "services", Required: true},
	{GVK: gvExportV1b1, New: func() metav1.Object { return &mcsv1b1.ServiceExport{} }, Namespaced: true, Rank: 3, ValidName: validation.IsDNS1035Label, Stores: MCS,
		Resource: "serviceexports", Required: true, Unread: "install the mcs-api CRDs"},
	{GVK: gvExportV1a1, New: func() metav1.Object { return &mcsv1a1.ServiceExport{} }, Namespaced: true, Rank: 3, ValidName: validation.IsDNS1035Label, Stores: MCS,
		Resource: "serviceexports", Required: true, Unread: "install the mcs-api CRDs"},
	{GVK: gvEndpointSlice, New: func() metav1.Object { return &discoveryv1.EndpointSlice{} }, Namespaced: true, Rank: 4, ValidName: validation.IsDNS1123Subdomain, Stores: MCS,
		Resource: "endpointslices", Required: true, LabelSelector: OwnSlicesExcluded},
	// eastwest's GatewayParameters, before the classes and Gateways that
	// name them.
	{GVK: gvParameters, New: func() metav1.Object { return &provision.GatewayParameters{} }, Namespaced: true, Rank: 3, ValidName: validation.IsDNS1123Subdomain, Stores: Gateway,
		Resource: "gatewayparameters", Client: Dynamic, Unread: "its GatewayClasses and Gateways that name GatewayParameters report InvalidParameters"},
	{GVK: gvGatewayClass, New: func() metav1.Object { return &gwapiv1.GatewayClass{} }, Rank: 4, ValidName: validation.IsDNS1123Subdomain, Stores: Gateway,
		Resource: "gatewayclasses", Unread: "its Gateways are not programmed"},
	{GVK: gvGateway, New: func() metav1.Object { return &gwapiv1.Gateway{} }, Namespaced: true, Rank: 4, ValidName: validation.IsDNS1123Subdomain, Stores: Gateway,
		Resource: "gateways", Unread: "its Gateways are not programmed"},
	{GVK: gvHTTPRoute, New: func() metav1.Object { return &gwapiv1.HTTPRoute{} }, Namespaced: true, Rank: 4, ValidName: validation.IsDNS1123Subdomain, Stores: Gateway,
		Resource: "httproutes", Unread: "its HTTPRoutes are not programmed"},
	{GVK: gvGRPCRoute, New: func() metav1.Object { return &gwapiv1.GRPCRoute{} }, Namespaced: true, Rank: 4, ValidName: validation.IsDNS1123Subdomain, Stores: Gateway,
		Resource: "grpcroutes", Unread: "its GRPCRoutes are not programmed"},
	// v1beta1 and v1 ReferenceGrants have the same fields.
	{GVK: gvGrantV1, New: func() metav1.Object { return &gwapiv1.ReferenceGrant{} }, Namespaced: true, Rank: 4, ValidName: validation.IsDNS1123Subdomain, Stores: Gateway,
		Resource: "referencegrants", Unread: "routes that reference another namespace through its ReferenceGrants are refused"},
	{GVK: gvGrantV1b1, New: func() metav1.Object { return &gwapiv1.ReferenceGrant{} }, Namespaced: true, Rank: 4, ValidName: validation.IsDNS1123Subdomain, Stores: Gateway,
		Resource: "referencegrants", Unread: "routes that reference another namespace through its ReferenceGrants are refused"},
	// A Secret decodes with the type its document gives (none: Opaque,
	// refused by the folder); the Gateway API store keeps TLS Secrets only.
	{GVK: gvSecret, New: func() metav1.Object { return &corev1.Secret{} }, Namespaced: true, Rank: 4, ValidName: validation.IsDNS1123Subdomain, Stores: Gateway,
		Resource: "secrets", FieldSelector: TLSSecrets, Note: "of type kubernetes.io/tls", Unread: "HTTPS listeners of its Gateways are not programmed"},
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

// Supported names every kind read, each with its versions in order of
// preference, for the errors that list them.
func Supported() string {
	var out []string
	index := map[schema.GroupKind]int{}
	for _, k := range Kinds {
		gk := k.GVK.GroupKind()
		if i, ok := index[gk]; ok {
			out[i] = strings.Replace(out[i], " "+k.GVK.Kind, " or "+k.GVK.Version+" "+k.GVK.Kind, 1)
			continue
		}
		s := k.GVK.GroupVersion().String() + " " + k.GVK.Kind
		if k.Note != "" {
			s += " " + k.Note
		}
		index[gk] = len(out)
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}
