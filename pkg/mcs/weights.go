package mcs

import (
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Per-member weights (for migrations and multi-cluster canaries): each
// exporting member's ServiceExport says what share of the service's
// traffic its endpoints take, relative to the other exporters' in the
// same tier. Weight 0 drains the member: it keeps its export (its
// endpoints stay in the ServiceImport and its DNS) but takes traffic only
// when no other member has a ready endpoint.
//
// Decision: an annotation on each member's own ServiceExport, not a policy
// object attached to the ServiceImport. The ServiceImport is the control
// plane's (written into every importer); the exports are where each
// member's owners already declare the service, so a migration is two
// annotations changed in the two clusters, with no object that could
// disagree with the exports or outlive them.
const (
	// AnnotationWeight ("0".."MaxWeight") on a ServiceExport is its
	// member's weight.
	AnnotationWeight = "eastwest.io/weight"
	// MaxWeight bounds a weight (Envoy and gRPC add them up in 32 bits).
	MaxWeight = 10000
	// DefaultWeight is the weight of a member whose export declares none
	// while another exporter of the service declares one. While no
	// exporter declares a weight, members weigh their ready endpoints.
	DefaultWeight = 100
	// ConditionWeight is the ServiceExport condition eastwest adds when
	// the export has AnnotationWeight: True (Applied) with the share it
	// gives, False (InvalidWeight) when it cannot be read, and the
	// member then weighs DefaultWeight.
	ConditionWeight = "eastwest.io/Weight"
)

// weightFrom reads an export's weight: nil when it declares none, an
// error when it cannot be read.
func weightFrom(annotations map[string]string) (*int32, error) {
	raw, ok := annotations[AnnotationWeight]
	if !ok {
		return nil, nil
	}
	w, err := strconv.ParseInt(raw, 10, 32)
	if err != nil || w < 0 || w > MaxWeight {
		return nil, fmt.Errorf("annotation %s: %q is not a whole number from 0 to %d", AnnotationWeight, raw, MaxWeight)
	}
	v := int32(w)
	return &v, nil
}

// Weighted reports whether any exporter of the service declares a weight:
// then every member weighs its declared weight (DefaultWeight when none),
// not its ready endpoints.
func (st *ServiceState) Weighted() bool {
	for i := range st.Backends {
		if st.Backends[i].Weight != nil {
			return true
		}
	}
	return false
}

// WeightOf is a member's weight in a weighted service (Weighted).
func (b *ClusterBackend) WeightOf() int32 {
	if b.Weight == nil {
		return DefaultWeight
	}
	return *b.Weight
}

// weightCondition is the ConditionWeight of a valid export, nil when it
// declares no weight.
func weightCondition(st *ServiceState, es *ExportStatus, c *ClusterInput) *metav1.Condition {
	if c == nil || c.Export == nil || c.Export.WeightError == "" && c.Export.Weight == nil {
		return nil
	}
	if c.Export.WeightError != "" {
		return &metav1.Condition{Type: ConditionWeight, Status: metav1.ConditionFalse, Reason: "InvalidWeight",
			Message: c.Export.WeightError + fmt.Sprintf("; the member weighs %d", DefaultWeight), ObservedGeneration: es.Generation}
	}
	total := int32(0)
	for i := range st.Backends {
		total += st.Backends[i].WeightOf()
	}
	w := *c.Export.Weight
	msg := fmt.Sprintf("weight %d of %d across the exporting members", w, total)
	if w == 0 {
		msg = "weight 0: drained; the member takes traffic only when no other member has a ready endpoint"
	}
	return &metav1.Condition{Type: ConditionWeight, Status: metav1.ConditionTrue, Reason: "Applied", Message: msg, ObservedGeneration: es.Generation}
}
