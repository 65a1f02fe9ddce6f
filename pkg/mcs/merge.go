package mcs

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// ClusterInput is what one member cluster holds of one service.
type ClusterInput struct {
	Cluster ClusterID
	// NamespaceExists is true while the service's namespace exists (and is
	// not terminating) in the cluster.
	NamespaceExists bool
	Export          *Export
	Service         *Service
	// Slices are the Service's EndpointSlices, sorted by name.
	Slices []*Slice
	// Loops are the endpoint addresses left out of Slices: the member's
	// east-west gateways (loop.go).
	Loops []string
	// Properties are the member's ClusterProperties (bounded), which
	// cluster selectors match.
	Properties map[string]string
}

// conflictReasons lists the Conflict reasons in the order they are reported.
var conflictReasons = []mcsv1b1.ServiceExportConditionReason{
	mcsv1b1.ServiceExportReasonPortConflict,
	mcsv1b1.ServiceExportReasonTypeConflict,
	mcsv1b1.ServiceExportReasonSessionAffinityConflict,
	mcsv1b1.ServiceExportReasonSessionAffinityConfigConflict,
	mcsv1b1.ServiceExportReasonInternalTrafficPolicyConflict,
	mcsv1b1.ServiceExportReasonTrafficDistributionConflict,
	mcsv1b1.ServiceExportReasonIPFamilyConflict,
	mcsv1b1.ServiceExportReasonLabelsConflict,
	mcsv1b1.ServiceExportReasonAnnotationsConflict,
	ReasonClusterSelectorsConflict,
}

// MergeService applies the KEP-1645 rules to one service's inputs from every
// member cluster and returns its merged state, or nil when no member has a
// ServiceExport for it. It is pure: the same inputs give the same result,
// whatever their order.
func MergeService(key ServiceKey, in []ClusterInput) *ServiceState {
	st := &ServiceState{Key: key}
	var constituents []*ClusterInput
	for i := range in {
		c := &in[i]
		// An export in a namespace that does not exist (or is being
		// deleted) is on its way out with the namespace.
		if c.Export == nil || !c.NamespaceExists {
			continue
		}
		es, valid := validateExport(key, c)
		if valid {
			constituents = append(constituents, c)
		}
		st.Exports = append(st.Exports, es)
	}
	if len(st.Exports) == 0 {
		return nil
	}
	slices.SortFunc(st.Exports, func(a, b ExportStatus) int { return cmp.Compare(a.Cluster, b.Cluster) })
	if len(constituents) == 0 {
		// Rule 3: no valid export, no import.
		return st
	}
	winner := oldest(constituents)
	imp := importOf(winner)
	conflicts := findConflicts(constituents, winner)
	imp.Ports = mergePorts(constituents)
	for _, c := range constituents {
		imp.Clusters = append(imp.Clusters, c.Cluster)
		st.Backends = append(st.Backends, ClusterBackend{Cluster: c.Cluster, Ports: c.Service.Ports, Slices: c.Slices, Loops: c.Loops, Weight: c.Export.Weight})
	}
	slices.Sort(imp.Clusters)
	slices.SortFunc(st.Backends, func(a, b ClusterBackend) int { return cmp.Compare(a.Cluster, b.Cluster) })
	for i := range in {
		if in[i].NamespaceExists {
			imp.ImportedIn = append(imp.ImportedIn, in[i].Cluster)
		}
	}
	slices.Sort(imp.ImportedIn)
	if imp.Selection != nil {
		props := map[ClusterID]map[string]string{}
		for i := range in {
			props[in[i].Cluster] = in[i].Properties
		}
		get := func(c ClusterID) map[string]string { return props[c] }
		imp.SelectorResults = make(map[ClusterID][]SelectorResult, len(imp.ImportedIn))
		for _, importer := range imp.ImportedIn {
			imp.SelectorResults[importer] = imp.Selection.Select(importer, imp.Clusters, get)
		}
	}
	st.Import = imp
	readyAndConflict(st, conflictCondition(conflicts, winner))
	weightConditions(st, constituents)
	return st
}

// weightConditions adds ConditionWeight to the valid exports that declare
// a weight.
func weightConditions(st *ServiceState, constituents []*ClusterInput) {
	for _, c := range constituents {
		es := st.Export(c.Cluster)
		if cond := weightCondition(st, es, c); cond != nil {
			es.Conditions = append(es.Conditions, *cond)
		}
	}
}

// validateExport is Rule 1: an export of no Service, or of an
// ExternalName Service, is not valid (KEP-1645 "Service Types"); the
// others are constituents of the import.
func validateExport(key ServiceKey, c *ClusterInput) (ExportStatus, bool) {
	es := ExportStatus{
		Cluster:             c.Cluster,
		Created:             c.Export.Created,
		Generation:          c.Export.Generation,
		APIVersion:          c.Export.APIVersion,
		ExportedLabels:      c.Export.ExportedLabels,
		ExportedAnnotations: c.Export.ExportedAnnotations,
	}
	invalid := func(reason mcsv1b1.ServiceExportConditionReason, msg string, ready mcsv1b1.ServiceExportConditionReason, readyMsg string) (ExportStatus, bool) {
		es.Conditions = []metav1.Condition{
			condition(mcsv1b1.ServiceExportConditionValid, metav1.ConditionFalse, reason, msg, es.Generation),
			condition(mcsv1b1.ServiceExportConditionReady, metav1.ConditionFalse, ready, readyMsg, es.Generation),
		}
		return es, false
	}
	switch {
	case c.Service == nil:
		return invalid(mcsv1b1.ServiceExportReasonNoService, fmt.Sprintf("Service %s not found", key),
			mcsv1b1.ServiceExportReasonPending, "waiting for the Service to exist")
	case c.Export.SelectionError != "":
		return invalid(ReasonInvalidClusterSelector, c.Export.SelectionError, mcsv1b1.ServiceExportReasonFailed, "the export is not valid")
	case c.Export.Selection != nil && c.Service.Headless:
		// KEP-5939: headless imports resolve to pods by DNS, which no
		// cluster selection can steer.
		return invalid(mcsv1b1.ServiceExportReasonInvalidServiceType, "cluster selectors apply to ClusterSetIP services only; this Service is headless",
			mcsv1b1.ServiceExportReasonFailed, "the export is not valid")
	case c.Service.Type == corev1.ServiceTypeExternalName:
		return invalid(mcsv1b1.ServiceExportReasonInvalidServiceType, "Service of type ExternalName cannot be exported",
			mcsv1b1.ServiceExportReasonFailed, "the export is not valid")
	}
	es.Conditions = []metav1.Condition{
		condition(mcsv1b1.ServiceExportConditionValid, metav1.ConditionTrue, mcsv1b1.ServiceExportReasonValid,
			"the Service is exportable", es.Generation),
	}
	return es, true
}

// oldest is Rule 4's winner: the oldest export wins every conflict; ties
// go to the smaller cluster ID so that the result never depends on input
// order. It sorts constituents that way.
func oldest(constituents []*ClusterInput) *ClusterInput {
	slices.SortFunc(constituents, func(a, b *ClusterInput) int {
		if c := a.Export.Created.Compare(b.Export.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.Cluster, b.Cluster)
	})
	return constituents[0]
}

// importOf is the import's properties, taken from the winning export
// (Rules 2 and 4): ClusterSetIP unless the Service is headless.
func importOf(winner *ClusterInput) *Import {
	ws := winner.Service
	imp := &Import{
		Type:                  mcsv1b1.ClusterSetIP, // Rule 2.
		SessionAffinity:       ws.SessionAffinity,
		SessionAffinityConfig: ws.SessionAffinityConfig,
		InternalTrafficPolicy: ws.InternalTrafficPolicy,
		TrafficDistribution:   ws.TrafficDistribution,
		IPFamilies:            ws.IPFamilies,
		Labels:                winner.Export.ExportedLabels,
		Annotations:           winner.Export.ExportedAnnotations,
		Passthrough:           winner.Export.Passthrough,
		Selection:             winner.Export.Selection,
	}
	if ws.Headless {
		imp.Type = mcsv1b1.Headless
	}
	return imp
}

// findConflicts is Rule 4's comparison: every property in which a later
// export differs from the winner's, by reason, naming the clusters.
func findConflicts(constituents []*ClusterInput, winner *ClusterInput) map[mcsv1b1.ServiceExportConditionReason][]string {
	ws := winner.Service
	conflicts := map[mcsv1b1.ServiceExportConditionReason][]string{}
	for _, c := range constituents[1:] {
		s := c.Service
		for _, d := range []struct {
			reason mcsv1b1.ServiceExportConditionReason
			differ bool
		}{
			{mcsv1b1.ServiceExportReasonTypeConflict, s.Headless != ws.Headless},
			{mcsv1b1.ServiceExportReasonSessionAffinityConflict, s.SessionAffinity != ws.SessionAffinity},
			// The config is compared only between exports with the same
			// affinity: with different ones it differs as a consequence.
			{mcsv1b1.ServiceExportReasonSessionAffinityConfigConflict, s.SessionAffinity == ws.SessionAffinity &&
				!apiequality.Semantic.DeepEqual(s.SessionAffinityConfig, ws.SessionAffinityConfig)},
			{mcsv1b1.ServiceExportReasonInternalTrafficPolicyConflict, s.InternalTrafficPolicy != ws.InternalTrafficPolicy},
			{mcsv1b1.ServiceExportReasonTrafficDistributionConflict, s.TrafficDistribution != ws.TrafficDistribution},
			{mcsv1b1.ServiceExportReasonIPFamilyConflict, !slices.Equal(s.IPFamilies, ws.IPFamilies)},
			{mcsv1b1.ServiceExportReasonLabelsConflict, !maps.Equal(c.Export.ExportedLabels, winner.Export.ExportedLabels)},
			{mcsv1b1.ServiceExportReasonAnnotationsConflict, !maps.Equal(c.Export.ExportedAnnotations, winner.Export.ExportedAnnotations)},
			{mcsv1b1.ServiceExportReasonPortConflict, !samePorts(s.Ports, ws.Ports)},
			{ReasonClusterSelectorsConflict, c.Export.Selection.String() != winner.Export.Selection.String()},
		} {
			if !d.differ {
				continue
			}
			what := string(c.Cluster)
			if v := conflictValue(d.reason, c); v != "" {
				what += " (" + v + ")"
			}
			conflicts[d.reason] = append(conflicts[d.reason], what)
		}
	}
	return conflicts
}

// readyAndConflict gives every valid export its Ready and Conflict
// conditions.
func readyAndConflict(st *ServiceState, conflict metav1.Condition) {
	for i := range st.Exports {
		es := &st.Exports[i]
		if es.Conditions[0].Status != metav1.ConditionTrue {
			continue
		}
		c := conflict
		c.ObservedGeneration = es.Generation
		es.Conditions = append(es.Conditions,
			condition(mcsv1b1.ServiceExportConditionReady, metav1.ConditionTrue, mcsv1b1.ServiceExportReasonExported,
				"the service is exported to the ClusterSet", es.Generation),
			c)
	}
}

// conflictCondition builds the Conflict condition shared by every
// constituent export: all reasons, comma-separated, and a message naming the
// clusters that differ and the cluster whose value is used.
func conflictCondition(conflicts map[mcsv1b1.ServiceExportConditionReason][]string, winner *ClusterInput) metav1.Condition {
	if len(conflicts) == 0 {
		return condition(mcsv1b1.ServiceExportConditionConflict, metav1.ConditionFalse, mcsv1b1.ServiceExportReasonNoConflicts,
			"all exports agree", 0)
	}
	var reasons, msgs []string
	for _, r := range conflictReasons {
		clusters, ok := conflicts[r]
		if !ok {
			continue
		}
		reasons = append(reasons, string(r))
		oldest := "cluster " + string(winner.Cluster)
		if v := conflictValue(r, winner); v != "" {
			oldest += " (" + v + ")"
		}
		what := "its value is used"
		if r == mcsv1b1.ServiceExportReasonPortConflict {
			what = "the import exposes the union of the ports, the oldest export's where two disagree, and a port gets traffic only from the clusters that expose it"
		}
		verb := "differs"
		if len(clusters) > 1 {
			verb = "differ"
		}
		msgs = append(msgs, fmt.Sprintf("%s: %s %s from the oldest export, %s; %s",
			r, strings.Join(clusters, ", "), verb, oldest, what))
	}
	return metav1.Condition{
		Type:    string(mcsv1b1.ServiceExportConditionConflict),
		Status:  metav1.ConditionTrue,
		Reason:  strings.Join(reasons, ","),
		Message: strings.Join(msgs, "; "),
	}
}

// conflictValue is an export's value of the property a conflict is
// about, as a condition message names it (TypeConflict: Headless or
// ClusterSetIP); "" for properties too long to show (labels,
// annotations, the affinity config).
func conflictValue(r mcsv1b1.ServiceExportConditionReason, c *ClusterInput) string {
	s := c.Service
	orUnset := func(v string) string {
		if v == "" {
			return "unset"
		}
		return v
	}
	switch r {
	case mcsv1b1.ServiceExportReasonTypeConflict:
		if s.Headless {
			return string(mcsv1b1.Headless)
		}
		return string(mcsv1b1.ClusterSetIP)
	case mcsv1b1.ServiceExportReasonSessionAffinityConflict:
		return orUnset(string(s.SessionAffinity))
	case mcsv1b1.ServiceExportReasonInternalTrafficPolicyConflict:
		return orUnset(string(s.InternalTrafficPolicy))
	case mcsv1b1.ServiceExportReasonTrafficDistributionConflict:
		return orUnset(s.TrafficDistribution)
	case mcsv1b1.ServiceExportReasonIPFamilyConflict:
		fams := make([]string, len(s.IPFamilies))
		for i, f := range s.IPFamilies {
			fams[i] = string(f)
		}
		return orUnset(strings.Join(fams, ","))
	case mcsv1b1.ServiceExportReasonPortConflict:
		return portList(s.Ports)
	case ReasonClusterSelectorsConflict:
		return c.Export.Selection.Summary()
	}
	return ""
}

// portList renders ports as name/protocol/port for messages.
func portList(ports []mcsv1b1.ServicePort) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = fmt.Sprintf("%s/%s/%d", p.Name, p.Protocol, p.Port)
	}
	return strings.Join(parts, ", ")
}

// portIdentity is how ports of different clusters are matched: by name, and
// for unnamed ports by protocol and number.
func portIdentity(p mcsv1b1.ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprintf("%s/%d", p.Protocol, p.Port)
}

type protoPort struct {
	protocol corev1.Protocol
	port     int32
}

// mergePorts returns the union of the constituents' ports (oldest first),
// merged by name, then by (protocol, port). A port whose name or whose
// protocol and number are taken by an older export's port is dropped: the
// older one wins (KEP-1645 "Service Port").
func mergePorts(constituents []*ClusterInput) []ImportPort {
	var out []ImportPort
	byName := map[string]bool{}
	byNumber := map[protoPort]bool{}
	for _, c := range constituents {
		for _, p := range c.Service.Ports {
			pp := protoPort{p.Protocol, p.Port}
			if byName[portIdentity(p)] || byNumber[pp] {
				continue
			}
			byName[portIdentity(p)] = true
			byNumber[pp] = true
			out = append(out, ImportPort{ServicePort: p})
		}
	}
	// Rule 5: a port gets traffic only from the clusters that expose it
	// exactly (strict port conflict semantics).
	for i := range out {
		for _, c := range constituents {
			for _, p := range c.Service.Ports {
				if p.Name == out[i].Name && p.Protocol == out[i].Protocol && p.Port == out[i].Port {
					out[i].Clusters = append(out[i].Clusters, c.Cluster)
					break
				}
			}
		}
		slices.Sort(out[i].Clusters)
	}
	return out
}

// samePorts reports whether two port lists hold the same ports, in any order.
func samePorts(a, b []mcsv1b1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for _, p := range a {
		if !slices.ContainsFunc(b, func(q mcsv1b1.ServicePort) bool { return equalPort(p, q) }) {
			return false
		}
	}
	return true
}

func equalPort(a, b mcsv1b1.ServicePort) bool {
	return a.Name == b.Name && a.Protocol == b.Protocol && a.Port == b.Port && ptr.Deref(a.AppProtocol, "") == ptr.Deref(b.AppProtocol, "")
}

func condition(t mcsv1b1.ServiceExportConditionType, s metav1.ConditionStatus, r mcsv1b1.ServiceExportConditionReason, msg string, gen int64) metav1.Condition {
	return metav1.Condition{Type: string(t), Status: s, Reason: string(r), Message: msg, ObservedGeneration: gen}
}
