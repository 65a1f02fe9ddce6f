package mcs

import (
	"iter"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// ClusterID is a member cluster's ClusterSet-unique ID, an RFC 1123 DNS label.
type ClusterID string

// ServiceKey names a multi-cluster service: by namespace sameness, the same
// namespace and name denote the same service in every member cluster.
type ServiceKey struct {
	Namespace string
	Name      string
}

// String renders the key as namespace/name.
func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// Compare orders keys by namespace, then name.
func (k ServiceKey) Compare(o ServiceKey) int {
	switch {
	case k.Namespace < o.Namespace:
		return -1
	case k.Namespace > o.Namespace:
		return 1
	case k.Name < o.Name:
		return -1
	case k.Name > o.Name:
		return 1
	}
	return 0
}

// Export is the part of a ServiceExport that the merge reads.
type Export struct {
	// Created is the ServiceExport's creationTimestamp: the oldest export
	// wins every conflict (KEP-1645 "Constraints and Conflict Resolution").
	Created    time.Time
	Generation int64
	// APIVersion is the multicluster.x-k8s.io version the export was read as.
	APIVersion string
	// ExportedLabels and ExportedAnnotations are the export's spec: they,
	// and never the Service's own metadata, become the import's metadata.
	ExportedLabels      map[string]string
	ExportedAnnotations map[string]string
	// Passthrough is the export's eastwest.io/passthrough annotation.
	Passthrough bool
	// Selection is the export's cluster selection (selection.go); nil
	// without one. SelectionError says why it cannot be used (the export
	// is then not valid).
	Selection      *Selection
	SelectionError string
	// Weight is the export's eastwest.io/weight (weights.go); nil without
	// one. WeightError says why it cannot be read (the member then weighs
	// DefaultWeight).
	Weight      *int32
	WeightError string
}

// trafficPolicyFrom fills an export's selection and weight from its
// annotations.
func (e *Export) trafficPolicyFrom(annotations map[string]string) *Export {
	sel, err := selectionFrom(annotations)
	if err != nil {
		e.SelectionError = err.Error()
	}
	e.Selection = sel
	w, err := weightFrom(annotations)
	if err != nil {
		e.WeightError = err.Error()
	}
	e.Weight = w
	return e
}

// AnnotationPassthrough ("true") on a ServiceExport asks the east-west
// gateways to carry the service's connections as bytes, whatever its
// ports' appProtocol: the backends terminate (m)TLS themselves, and the
// stream reaches them untouched (inside the gateways' own tunnel between
// networks). The oldest export's annotation holds for the import.
const AnnotationPassthrough = "eastwest.io/passthrough"

// Service is the part of an exported Service that the merge reads, with
// the apiserver's defaults applied.
type Service struct {
	Type                  corev1.ServiceType
	Headless              bool
	Ports                 []mcsv1b1.ServicePort
	SessionAffinity       corev1.ServiceAffinity
	SessionAffinityConfig *corev1.SessionAffinityConfig
	InternalTrafficPolicy corev1.ServiceInternalTrafficPolicy
	TrafficDistribution   string
	IPFamilies            []corev1.IPFamily
}

// Slice is the part of one EndpointSlice of an exported Service that the
// merge and translation read. A Slice is immutable once built.
//
// Its endpoints are the source object's own (never modified, by the
// sources' contract): keeping a second, converted copy of every endpoint
// would double what a large ClusterSet costs. Endpoint(i) and All resolve
// their conditions on the fly.
type Slice struct {
	Name        string
	AddressType discoveryv1.AddressType
	Ports       []SlicePort
	endpoints   []discoveryv1.Endpoint
}

// Len is the number of endpoints.
func (s *Slice) Len() int { return len(s.endpoints) }

// Endpoint returns the i-th endpoint with its conditions resolved.
func (s *Slice) Endpoint(i int) Endpoint {
	e := &s.endpoints[i]
	ready := e.Conditions.Ready == nil || *e.Conditions.Ready
	serving := ready
	if e.Conditions.Serving != nil {
		serving = *e.Conditions.Serving
	}
	out := Endpoint{
		Addresses:   e.Addresses,
		Ready:       ready,
		Serving:     serving,
		Terminating: e.Conditions.Terminating != nil && *e.Conditions.Terminating,
	}
	if e.Hostname != nil {
		out.Hostname = *e.Hostname
	}
	if e.Zone != nil {
		out.Zone = *e.Zone
	}
	if e.Hints != nil {
		out.forZones = e.Hints.ForZones
	}
	return out
}

// All iterates over the endpoints.
func (s *Slice) All() iter.Seq[Endpoint] {
	return func(yield func(Endpoint) bool) {
		for i := range s.endpoints {
			if !yield(s.Endpoint(i)) {
				return
			}
		}
	}
}

// SlicePort is one port of an EndpointSlice: the Service port it serves
// (by name and protocol) and the number the endpoints listen on.
type SlicePort struct {
	Name        string
	Protocol    corev1.Protocol
	Port        int32
	AppProtocol *string
}

// Endpoint is one endpoint of a Slice with its conditions resolved as the
// EndpointSlice API defines them (a nil ready means ready, a nil serving
// follows ready, a nil terminating means not terminating).
type Endpoint struct {
	Addresses   []string
	Ready       bool
	Serving     bool
	Terminating bool
	Hostname    string
	Zone        string
	// forZones are the zones the EndpointSlice controller hints the
	// endpoint for (trafficDistribution), nil when it gives none.
	forZones []discoveryv1.ForZone
}

// Near reports whether the endpoint is for clients in zone, as kube-proxy
// reads it for trafficDistribution PreferClose and PreferSameZone: the
// zones of its hints when it has any, else its own zone.
func (e Endpoint) Near(zone string) bool {
	if zone == "" {
		return false
	}
	if len(e.forZones) > 0 {
		return slices.ContainsFunc(e.forZones, func(z discoveryv1.ForZone) bool { return z.Name == zone })
	}
	return e.Zone == zone
}

// Port returns the number the slice's endpoints listen on for the Service
// port with that name and protocol.
func (s *Slice) Port(name string, protocol corev1.Protocol) (int32, bool) {
	for _, p := range s.Ports {
		if p.Name == name && p.Protocol == protocol {
			return p.Port, true
		}
	}
	return 0, false
}
