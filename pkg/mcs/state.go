package mcs

import (
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// State is the ClusterSet's merged state at one point in time. It is never
// modified after the Store hands it out; read it from any goroutine.
type State struct {
	// Clusters lists every member the Store knows, sorted by member name,
	// including members left out of the merge (with the reason).
	Clusters []ClusterInfo
	// Services holds every service that at least one member exports
	// (validly or not).
	Services Services
}

// ClusterInfo is one member cluster as the merge sees it.
type ClusterInfo struct {
	// Member is the name the member was configured with (its folder,
	// kubeconfig or Secret name).
	Member string `json:"member"`
	// ID is the member's ClusterSet-unique ID: its About API
	// cluster.clusterset.k8s.io ClusterProperty, else its member name.
	// Empty when the member is left out of the merge.
	ID ClusterID `json:"id"`
	// ClusterSet is the value of the member's clusterset.k8s.io property.
	ClusterSet string `json:"clusterSet,omitempty"`
	// Error says why the member is left out of the merge; empty otherwise.
	Error string `json:"error,omitempty"`
	// Properties are the member's About API ClusterProperties, name to
	// value (cluster.clusterset.k8s.io, clusterset.k8s.io and the network
	// among them): what services' cluster selectors match (selection.go).
	// At most MaxProperties, each value at most MaxPropertyValue bytes;
	// the others are left out and named in PropertyWarnings.
	Properties       map[string]string `json:"properties,omitempty"`
	PropertyWarnings []string          `json:"propertyWarnings,omitempty"`
	// Profile is the member's ClusterProfile, when the member comes from
	// the fleet's inventory: its name and the fleet manager's word on the
	// member's control plane (shown, never acted on: an unhealthy member
	// is not drained for it).
	Profile *ProfileInfo `json:"profile,omitempty"`
	// Network is the value of the member's network.eastwest.io property:
	// members on one network reach each other's pods directly. Empty is
	// the default network.
	Network string `json:"network,omitempty"`
	// Gateways are the addresses where the member's east-west gateways
	// take traffic from other networks, sorted by Service.
	Gateways []GatewayAddress `json:"gateways,omitempty"`
	// GatewayWarnings are the problems of the member's gateway Services
	// while it has gateway addresses all the same: addresses left out
	// over the bounds (MaxGatewayAddresses), a Service without a tunnel
	// port.
	GatewayWarnings []string `json:"gatewayWarnings,omitempty"`
	// GatewayError says, when the ClusterSet spans networks, why other
	// networks cannot reach the member (no usable gateway address).
	GatewayError string `json:"gatewayError,omitempty"`
	// TunnelSecret is the Secret (namespace/name) that holds the
	// certificate of the member's east-west gateways for tunnels between
	// networks: the gateway Service's eastwest.io/tunnel-secret
	// annotation, else DefaultTunnelSecret in its namespace. Empty
	// without a gateway Service.
	TunnelSecret string `json:"tunnelSecret,omitempty"`
	// TunnelError says what is wrong with the tunnel Secret (not found,
	// not a valid certificate and key, a CA that does not parse); the
	// last good certificate stays in use when there is one, and other
	// networks reach the member only while one is (GatewayError).
	TunnelError string `json:"tunnelError,omitempty"`
	// LocalGateway is where the member's own clients without a proxy
	// (proxyless gRPC) reach its gateways: the gateway Service's cluster
	// IP and HTTP port. Nil without one.
	LocalGateway *GatewayAddress `json:"localGateway,omitempty"`
	// GatewayPods are the ready pod addresses of the member's gateway
	// Services: where its pods without a proxy reach other networks
	// (relay.go).
	GatewayPods []string `json:"gatewayPods,omitempty"`
	// IgnoredGateways are the Services (namespace/name) labelled as
	// east-west gateways outside the member's gateway namespace: not
	// gateways, since only the operator declares those. A namespace user
	// labelling a Service shows up here, in the log and in
	// eastwest_ignored_gateway_services.
	IgnoredGateways []string `json:"ignoredGateways,omitempty"`
}

// NetworkName is how a network is shown: "default" for the default one.
func NetworkName(network string) string {
	if network == "" {
		return "default"
	}
	return network
}

// ServiceKeys returns the keys of all services, sorted.
func (s *State) ServiceKeys() []ServiceKey {
	keys := make([]ServiceKey, 0, s.Services.Len())
	for k := range s.Services.All() {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, ServiceKey.Compare)
	return keys
}

// ClusterIDs returns the IDs of the members taking part in the merge, sorted.
func (s *State) ClusterIDs() []ClusterID {
	var ids []ClusterID
	for _, c := range s.Clusters {
		if c.ID != "" {
			ids = append(ids, c.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// ServiceState is the merged state of one multi-cluster service. It is
// immutable: a change to any input produces a new ServiceState.
type ServiceState struct {
	Key ServiceKey
	// Import is the ServiceImport the ClusterSet should hold; nil while no
	// member validly exports the service (KEP-1645 "Importing Services").
	Import *Import
	// Exports holds the status of the service's ServiceExport in every
	// member that has one, sorted by cluster.
	Exports []ExportStatus
	// Backends holds, for every cluster that validly exports the service,
	// its Service ports and EndpointSlices, sorted by cluster.
	Backends []ClusterBackend
}

// Import is the merged ServiceImport of a service.
type Import struct {
	Type                  mcsv1b1.ServiceImportType
	Ports                 []ImportPort
	SessionAffinity       corev1.ServiceAffinity
	SessionAffinityConfig *corev1.SessionAffinityConfig
	InternalTrafficPolicy corev1.ServiceInternalTrafficPolicy
	TrafficDistribution   string
	IPFamilies            []corev1.IPFamily
	// Labels and Annotations are the oldest export's exportedLabels and
	// exportedAnnotations.
	Labels      map[string]string
	Annotations map[string]string
	// Passthrough is the oldest export's eastwest.io/passthrough: the
	// gateways carry the service's connections as bytes.
	Passthrough bool `json:"passthrough,omitempty"`
	// Selection is the oldest export's cluster selection (KEP-5939); nil
	// without one.
	Selection *Selection `json:"selection,omitempty"`
	// SelectorResults are, per importing member, the clusters each of
	// Selection's selectors matches (the KEP's clusterSelectorResults).
	SelectorResults map[ClusterID][]SelectorResult `json:"selectorResults,omitempty"`
	// Clusters are the exporting clusters (the import's status.clusters).
	Clusters []ClusterID
	// ImportedIn are the clusters that should hold the ServiceImport: every
	// member where the namespace exists (namespace sameness).
	ImportedIn []ClusterID
}

// ImportPort is one port of an Import and the clusters that serve it.
type ImportPort struct {
	mcsv1b1.ServicePort
	// Clusters are the exporting clusters whose Service exposes exactly this
	// port (name, protocol and number): only they get its traffic.
	Clusters []ClusterID
	// RelayPort is where east-west gateways take this port's connections
	// from their own member's pods without a proxy (relay.go); 0 for
	// ports Envoy does not carry.
	RelayPort int32 `json:"relayPort,omitempty"`
	// RelayError says why a TCP port has no relay port (the per-service
	// cap, or the range full).
	RelayError string `json:"relayError,omitempty"`
}

// ExportStatus is the status the merge gives one member's ServiceExport.
type ExportStatus struct {
	Cluster             ClusterID
	Created             time.Time
	Generation          int64
	APIVersion          string
	ExportedLabels      map[string]string
	ExportedAnnotations map[string]string
	// Conditions are Valid, Ready and, for valid exports, Conflict. Their
	// LastTransitionTime is left zero: the merge has no clock; whoever
	// writes them sets it.
	Conditions []metav1.Condition
}

// Condition returns the condition of that type, or nil.
func (e *ExportStatus) Condition(t mcsv1b1.ServiceExportConditionType) *metav1.Condition {
	for i := range e.Conditions {
		if e.Conditions[i].Type == string(t) {
			return &e.Conditions[i]
		}
	}
	return nil
}

// ClusterBackend is one exporting cluster's share of a service.
type ClusterBackend struct {
	Cluster ClusterID
	// Ports are the cluster's own Service ports.
	Ports  []mcsv1b1.ServicePort
	Slices []*Slice
	// Loops are the endpoint addresses left out of Slices because they
	// are the member's east-west gateways (loop.go).
	Loops []string `json:"loops,omitempty"`
	// Weight is the member's declared weight (weights.go); nil when its
	// export declares none.
	Weight *int32 `json:"weight,omitempty"`
}

// Export returns the status of the export in that cluster, or nil.
func (s *ServiceState) Export(c ClusterID) *ExportStatus {
	for i := range s.Exports {
		if s.Exports[i].Cluster == c {
			return &s.Exports[i]
		}
	}
	return nil
}

// Backend returns that cluster's backend, or nil.
func (s *ServiceState) Backend(c ClusterID) *ClusterBackend {
	for i := range s.Backends {
		if s.Backends[i].Cluster == c {
			return &s.Backends[i]
		}
	}
	return nil
}
