package gatewayapi

import (
	"time"

	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// ControllerName is the GatewayClass controllerName eastwest implements,
// and the controllerName of the route parent statuses it writes.
const ControllerName gwapiv1.GatewayController = "eastwest.io/gateway-controller"

// Result is what Build makes of one member cluster's Gateway API objects.
type Result struct {
	// Gateways are the member's Gateways of an accepted eastwest class
	// that have at least one valid listener, sorted by namespace/name.
	Gateways []*Gateway
	// Mesh holds the mesh routes of the member by parent service.
	Mesh map[mcs.ServiceKey][]*MeshRoute
	// Statuses are the statuses of the objects this controller owns.
	Statuses []Status
	// Refs are the services the result read (backends and mesh parents):
	// it must be built again when any of them changes.
	Refs map[mcs.ServiceKey]bool
	// Fronts are the Services in front of Gateways' Envoys among Refs:
	// their readiness (a ready endpoint or none) is read too, for the
	// Gateways' Programmed condition.
	Fronts map[mcs.ServiceKey]bool
	// RouteRefs are, per route with a parent of ours, the services it
	// names (backends, mirrors, mesh parents), for explaining a service.
	RouteRefs map[RouteKey][]mcs.ServiceKey
	// Provision are the accepted Gateways whose Envoys eastwest deploys,
	// sorted by namespace/name.
	Provision []Provision
}

// Gateway is one Gateway as its Envoy serves it.
type Gateway struct {
	Key types.NamespacedName
	// Ports are the Gateway's valid listeners grouped by port, by port.
	Ports []*Port
	// Secrets are the TLS certificates its HTTPS listeners use, by
	// Secret namespace/name.
	Secrets map[types.NamespacedName]Certificate
}

// Certificate is a validated TLS Secret's certificate chain and key.
type Certificate struct {
	Chain, Key []byte
}

// Port is the listeners of a Gateway on one port; they share a protocol
// (listeners conflicting on protocol are not programmed).
type Port struct {
	Port     int32
	Protocol gwapiv1.ProtocolType // HTTP or HTTPS
	// Listeners are the Gateway listeners on the port, by name.
	Listeners []*Listener
}

// Listener is one valid Gateway listener and the routes attached to it.
type Listener struct {
	Name     string
	Hostname string // empty: any
	// Certificates name the Secrets of an HTTPS listener, in order.
	Certificates []types.NamespacedName
	// Hosts are the virtual hosts its attached routes make: one per
	// effective hostname ("*" for any), each with its rules in
	// precedence order.
	Hosts []*Host
}

// Host is the route rules that apply to one hostname.
type Host struct {
	Hostname string
	Routes   []*RouteRule
}

// RouteKey names a route.
type RouteKey struct {
	Kind      string // HTTPRoute or GRPCRoute
	Namespace string
	Name      string
}

func (k RouteKey) String() string { return k.Kind + " " + k.Namespace + "/" + k.Name }

// MeshRoute is a route attached to a service port (Port 0: every port)
// for the member's proxyless gRPC clients; Rules are in precedence order
// among the routes attached to the same service.
type MeshRoute struct {
	Port  int32
	Rules []*RouteRule
}

// RouteRule is one match of one rule of a route, resolved: the unit a
// data plane tries in order. A rule without matches gets one that
// matches every request.
type RouteRule struct {
	Route   RouteKey
	Created time.Time
	Rule    int // index of the rule in the route
	Match   Match
	Action  Action
}

// Match is what a request must carry; zero fields match everything.
type Match struct {
	Path    PathMatch
	Method  string
	Headers []ValueMatch
	Query   []ValueMatch
}

// PathMatch types, as gwapiv1.PathMatchType.
const (
	PathExact  = gwapiv1.PathMatchExact
	PathPrefix = gwapiv1.PathMatchPathPrefix
	PathRegex  = gwapiv1.PathMatchRegularExpression
)

// PathMatch matches the request path.
type PathMatch struct {
	Type  gwapiv1.PathMatchType
	Value string
}

// ValueMatch matches a header or query parameter, exactly or by a RE2
// regular expression.
type ValueMatch struct {
	Name  string
	Value string
	Regex bool
}

// Action is what a matched request gets.
type Action struct {
	// Redirect, when set, answers with a redirect (no backends).
	Redirect *Redirect
	// Backends share the requests by weight; an Invalid backend's share
	// is answered with HTTP 500 (Gateway API "invalid backendRef").
	Backends []Backend
	// Mirrors get a copy of the requests.
	Mirrors         []Mirror
	RequestHeaders  HeaderModifier
	ResponseHeaders HeaderModifier
	Rewrite         *Rewrite
	Timeout         *time.Duration // timeouts.request; 0 disables
	BackendTimeout  *time.Duration // timeouts.backendRequest
	Retry           *Retry
}

// HeaderModifier sets, adds and removes headers.
type HeaderModifier struct {
	Set, Add []Header
	Remove   []string
}

// Header is a header name and value.
type Header struct{ Name, Value string }

// Redirect is a RequestRedirect filter.
type Redirect struct {
	Scheme     string
	Hostname   string
	Port       int32
	FullPath   *string
	PrefixPath *string // replaces the matched prefix
	StatusCode int
	// MatchPrefix is the rule's PathPrefix value (for PrefixPath).
	MatchPrefix string
}

// Rewrite is a URLRewrite filter.
type Rewrite struct {
	Hostname    string
	FullPath    *string
	PrefixPath  *string
	MatchPrefix string
}

// Retry is an HTTPRoute retry policy.
type Retry struct {
	Codes    []int
	Attempts int
	Backoff  time.Duration
}

// BackendKind says where a backend's endpoints come from.
type BackendKind string

// The kinds of backends.
const (
	// BackendImport is a ServiceImport port: its ClusterSet endpoints.
	BackendImport BackendKind = "ServiceImport"
	// BackendService is a Service port of the route's own cluster.
	BackendService BackendKind = "Service"
	// BackendInvalid could not be resolved: its share gets HTTP 500.
	BackendInvalid BackendKind = "Invalid"
)

// Backend is a resolved backendRef.
type Backend struct {
	Kind    BackendKind
	Service mcs.ServiceKey
	Port    int32
	Weight  uint32
	// Reason says why an Invalid backend is not served.
	Reason string
}

// Mirror is a RequestMirror filter's backend and fraction (in percent).
type Mirror struct {
	Backend Backend
	Percent float64
}

// Status is the status this controller computes for one object. Exactly
// one of the status fields is set. Conditions carry no time.
type Status struct {
	Kind       string `json:"kind"` // GatewayClass, Gateway, HTTPRoute, GRPCRoute, GatewayParameters
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Generation int64  `json:"generation"`

	GatewayClass *gwapiv1.GatewayClassStatus `json:"gatewayClass,omitempty"`
	Gateway      *gwapiv1.GatewayStatus      `json:"gateway,omitempty"`
	// Route holds only the parents this controller owns.
	Route *gwapiv1.RouteStatus `json:"route,omitempty"`
	// Parameters is a GatewayParameters' status (Accepted).
	Parameters *provision.GatewayParametersStatus `json:"parameters,omitempty"`
}

// MeshRules returns the rules of the mesh routes that apply to a port of
// their parent service, in precedence order.
func MeshRules(routes []*MeshRoute, port int32) []*RouteRule {
	var out []*RouteRule
	for _, m := range routes {
		if m.Port == 0 || m.Port == port {
			out = append(out, m.Rules...)
		}
	}
	if len(routes) > 1 {
		SortRules(out)
	}
	return out
}
