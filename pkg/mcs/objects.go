package mcs

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// MaxEndpointsPerSlice is the most endpoints an MCS EndpointSlice holds,
// the EndpointSlice controller's default.
const MaxEndpointsPerSlice = 100

// ClusterObjects are the MCS objects one member cluster should hold.
type ClusterObjects struct {
	Cluster        ClusterID
	ServiceImports []*mcsv1b1.ServiceImport
	// ServiceExports are the cluster's own exports with the status the
	// merge gives them (spec as read, status.conditions computed).
	ServiceExports []*mcsv1b1.ServiceExport
	EndpointSlices []*discoveryv1.EndpointSlice
}

// ObjectsFor returns the MCS objects cluster c should hold, sorted by
// namespace and name. Conditions get now as their transition time.
func (s *State) ObjectsFor(c ClusterID, now time.Time) ClusterObjects {
	out := ClusterObjects{Cluster: c}
	for _, key := range s.ServiceKeys() {
		st := s.Services.Get(key)
		if es := st.Export(c); es != nil {
			se := exportObject(key, es, now)
			if cond := ReachableCondition(s.Clusters, c, es.Generation); cond != nil {
				cond.LastTransitionTime = metav1.NewTime(now)
				se.Status.Conditions = append(se.Status.Conditions, *cond)
			}
			out.ServiceExports = append(out.ServiceExports, se)
		}
		if st.Import != nil && slices.Contains(st.Import.ImportedIn, c) {
			out.ServiceImports = append(out.ServiceImports, ImportObject(st, c))
			out.EndpointSlices = append(out.EndpointSlices, EndpointSlicesFor(st, c, s.Clusters)...)
		}
	}
	return out
}

// ImportObject renders a service's Import as the ServiceImport importing
// cluster c holds: the same in every importer but for its cluster
// selector results (AnnotationClusterSelectorResults), evaluated for c.
// spec.ips is left to the write-back, which owns ClusterSet IP
// allocation.
func ImportObject(st *ServiceState, c ClusterID) *mcsv1b1.ServiceImport {
	imp := st.Import
	annotations := imp.Annotations
	if imp.Selection != nil {
		annotations = maps.Clone(annotations)
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[AnnotationClusterSelectorResults] = SelectorResultsJSON(imp.SelectorResults[c])
	}
	si := &mcsv1b1.ServiceImport{
		TypeMeta: metav1.TypeMeta{APIVersion: mcsv1b1.GroupVersion.String(), Kind: mcsv1b1.ServiceImportKindName},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   st.Key.Namespace,
			Name:        st.Key.Name,
			Labels:      imp.Labels,
			Annotations: annotations,
		},
		Spec: mcsv1b1.ServiceImportSpec{
			Type:                  imp.Type,
			SessionAffinity:       imp.SessionAffinity,
			SessionAffinityConfig: imp.SessionAffinityConfig,
			IPFamilies:            imp.IPFamilies,
		},
	}
	si.Spec.Ports = make([]mcsv1b1.ServicePort, len(imp.Ports))
	for i, p := range imp.Ports {
		si.Spec.Ports[i] = p.ServicePort
	}
	if imp.InternalTrafficPolicy != "" {
		itp := imp.InternalTrafficPolicy
		si.Spec.InternalTrafficPolicy = &itp
	}
	if imp.TrafficDistribution != "" {
		td := imp.TrafficDistribution
		si.Spec.TrafficDistribution = &td
	}
	for _, c := range imp.Clusters {
		si.Status.Clusters = append(si.Status.Clusters, mcsv1b1.ClusterStatus{Cluster: string(c)})
	}
	// The write-back writes the importer's EndpointSlices of every
	// ServiceImport it writes (mcs-api v0.5.2: a consumer such as
	// CoreDNS's multicluster plugin may then read them).
	si.Status.EndpointSliceObjects = mcsv1b1.EndpointSliceObjectsPresent
	return si
}

func exportObject(key ServiceKey, es *ExportStatus, now time.Time) *mcsv1b1.ServiceExport {
	se := &mcsv1b1.ServiceExport{
		// Both versions have the same fields: the export is rendered in
		// the version it was read as.
		TypeMeta: metav1.TypeMeta{APIVersion: es.APIVersion, Kind: mcsv1b1.ServiceExportKindName},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: key.Namespace, Name: key.Name, Generation: es.Generation,
			CreationTimestamp: metav1.NewTime(es.Created),
		},
		Spec: mcsv1b1.ServiceExportSpec{
			ExportedLabels:      es.ExportedLabels,
			ExportedAnnotations: es.ExportedAnnotations,
		},
	}
	se.Status.Conditions = slices.Clone(es.Conditions)
	for i := range se.Status.Conditions {
		if se.Status.Conditions[i].LastTransitionTime.IsZero() {
			se.Status.Conditions[i].LastTransitionTime = metav1.NewTime(now)
		}
	}
	return se
}

// EndpointSlicesFor returns the MCS EndpointSlices cluster c should hold
// for a service it imports (Rule 7), or nil when it does not import it.
//
// Every exporting cluster's endpoints are included, the importer's own too:
// consumers of the slices (kube-proxy behind a ClusterSet IP, DNS for
// headless imports) must see the whole ClusterSet. Each slice holds
// endpoints of one source cluster and one source slice (whose port numbers
// it shares), at most MaxEndpointsPerSlice of them, and carries only the
// import's ports that its cluster exposes (Rule 5). Names derive from the
// service, the source cluster, the source slice and the chunk, so they stay
// the same while those do.
//
// In a ClusterSet of several networks (clusters, the members' ClusterInfo),
// the endpoints of members on other networks than c's are not routable
// from c's pods: they are left out, and c's relay slice (relay.go) lists
// c's own gateway pods on the relay ports of the ports those members
// serve, when c has gateway pods and they have gateway addresses.
func EndpointSlicesFor(st *ServiceState, c ClusterID, clusters []ClusterInfo) []*discoveryv1.EndpointSlice {
	imp := st.Import
	if imp == nil || !slices.Contains(imp.ImportedIn, c) {
		return nil
	}
	info := map[ClusterID]*ClusterInfo{}
	for i := range clusters {
		info[clusters[i].ID] = &clusters[i]
	}
	mine := info[c]
	relayed := map[ClusterID]bool{}
	var out []*discoveryv1.EndpointSlice
	for _, b := range st.Backends {
		if !imp.Selects(c, b.Cluster) {
			continue // outside a strict selection: never c's endpoint
		}
		if theirs := info[b.Cluster]; mine != nil && theirs != nil && theirs.Network != mine.Network {
			if len(mine.GatewayPods) > 0 && len(theirs.Gateways) > 0 {
				relayed[b.Cluster] = true
			}
			continue
		}
		for _, src := range b.Slices {
			ports := slicePorts(imp, b.Cluster, src)
			if len(ports) == 0 || src.Len() == 0 {
				continue
			}
			for chunk := 0; chunk*MaxEndpointsPerSlice < src.Len(); chunk++ {
				eps := make([]Endpoint, 0, MaxEndpointsPerSlice)
				for i := chunk * MaxEndpointsPerSlice; i < min(src.Len(), (chunk+1)*MaxEndpointsPerSlice); i++ {
					eps = append(eps, src.Endpoint(i))
				}
				out = append(out, &discoveryv1.EndpointSlice{
					TypeMeta: metav1.TypeMeta{APIVersion: discoveryv1.SchemeGroupVersion.String(), Kind: "EndpointSlice"},
					ObjectMeta: metav1.ObjectMeta{
						Namespace: st.Key.Namespace,
						Name:      mcsSliceName(st.Key, b.Cluster, src.Name, chunk),
						Labels: map[string]string{
							mcsv1b1.LabelServiceName:   st.Key.Name,
							mcsv1b1.LabelSourceCluster: string(b.Cluster),
							discoveryv1.LabelManagedBy: ControllerName,
						},
					},
					AddressType: src.AddressType,
					Ports:       ports,
					Endpoints:   sliceEndpoints(eps),
				})
			}
		}
	}
	if mine != nil {
		if rs := relaySlice(st, *mine, relayed); rs != nil {
			out = append(out, rs)
		}
	}
	return out
}

// slicePorts maps the import's ports that cluster c exposes to the numbers
// the source slice's endpoints listen on.
func slicePorts(imp *Import, c ClusterID, src *Slice) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for _, p := range imp.Ports {
		if !slices.Contains(p.Clusters, c) {
			continue
		}
		n, ok := src.Port(p.Name, p.Protocol)
		if !ok {
			continue
		}
		out = append(out, discoveryv1.EndpointPort{
			Name:        ptr.To(p.Name),
			Protocol:    ptr.To(p.Protocol),
			Port:        ptr.To(n),
			AppProtocol: p.AppProtocol,
		})
	}
	return out
}

func sliceEndpoints(eps []Endpoint) []discoveryv1.Endpoint {
	out := make([]discoveryv1.Endpoint, len(eps))
	for i, e := range eps {
		out[i] = discoveryv1.Endpoint{
			Addresses: e.Addresses,
			Conditions: discoveryv1.EndpointConditions{
				Ready:       ptr.To(e.Ready),
				Serving:     ptr.To(e.Serving),
				Terminating: ptr.To(e.Terminating),
			},
		}
		if e.Hostname != "" {
			out[i].Hostname = ptr.To(e.Hostname)
		}
		if e.Zone != "" {
			out[i].Zone = ptr.To(e.Zone)
		}
	}
	return out
}

// mcsSliceName is a readable, stable and unique name for one MCS slice: a
// prefix from the service and source cluster, and a hash of everything that
// identifies the slice.
func mcsSliceName(key ServiceKey, c ClusterID, source string, chunk int) string {
	h := sha256.New()
	for _, part := range []string{key.Namespace, key.Name, string(c), source, strconv.Itoa(chunk)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	sum := hex.EncodeToString(h.Sum(nil))[:10]
	return trimName(key.Name, 24) + "-" + trimName(string(c), 24) + "-" + sum
}

func trimName(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.TrimRight(s, "-.")
}
