package mcs

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

// Cluster selection (KEP-5939): an exporter declares ordered cluster
// selectors for its service; each importing member's clients and gateways
// use the first selector's clusters that have a ready endpoint, then the
// next, and the clusters no selector matches last (or never: Strict).
//
// mcs-api v0.5.2 has no clusterSelectors field yet, so eastwest reads the
// KEP's shape from an annotation on the ServiceExport (alpha: it moves to
// spec.clusterSelectors once mcs-api ships it). Only selectionFrom reads
// the annotations; everything else reads a Selection.
const (
	// AnnotationClusterSelectors holds the KEP's spec.clusterSelectors
	// list, as JSON or YAML:
	//   [{"propertySelector": {"matchProperties": {"region.topology.k8s.io": "@SameAsImporter@"}}}]
	AnnotationClusterSelectors = "eastwest.io/cluster-selectors"
	// AnnotationClusterSelectorsStrict ("true") keeps the service's
	// traffic inside its selectors' clusters: no endpoint outside them is
	// ever used, and with none ready requests fail (HTTP 503, gRPC
	// UNAVAILABLE) rather than leave. An eastwest extension for
	// jurisdiction; the KEP's default falls back to every cluster.
	AnnotationClusterSelectorsStrict = "eastwest.io/cluster-selectors-strict"
	// AnnotationClusterSelectorResults is the ServiceImport annotation the
	// write-back sets in every importing member: the KEP's
	// status.clusterSelectorResults as evaluated for that member, JSON
	// ([{"clusters":["a"]},{"clusters":["a","b"]}]), until mcs-api has the
	// status field.
	AnnotationClusterSelectorResults = "eastwest.io/cluster-selector-results"
	// SameAsImporter, as a value, is the importing member's own value of
	// the property.
	SameAsImporter = "@SameAsImporter@"
	// MaxClusterSelectors is the KEP's bound on the list.
	MaxClusterSelectors = 16
)

// The ServiceExport reasons of KEP-5939 (not in mcs-api v0.5.2).
const (
	// ReasonInvalidClusterSelector: Valid is False, the selectors cannot
	// be used (the export is not a constituent: its endpoints get no
	// traffic, which is what a jurisdiction's typo must do).
	ReasonInvalidClusterSelector mcsv1b1.ServiceExportConditionReason = "InvalidClusterSelector"
	// ReasonClusterSelectorsConflict: exports disagree on the selectors;
	// the oldest export's hold.
	ReasonClusterSelectorsConflict mcsv1b1.ServiceExportConditionReason = "ClusterSelectorsConflict"
)

// ClusterSelector is one entry of a service's cluster selectors: it
// selects the clusters whose properties match.
type ClusterSelector struct {
	PropertySelector *PropertySelector `json:"propertySelector"`
}

// PropertySelector is metav1.LabelSelector over ClusterProperties, with
// matchProperties for matchLabels; its requirements are ANDed.
type PropertySelector struct {
	MatchProperties  map[string]string             `json:"matchProperties,omitempty"`
	MatchExpressions []PropertySelectorRequirement `json:"matchExpressions,omitempty"`
}

// PropertySelectorRequirement is a LabelSelectorRequirement over
// ClusterProperties (operators In, NotIn, Exists, DoesNotExist).
type PropertySelectorRequirement struct {
	Key      string                       `json:"key"`
	Operator metav1.LabelSelectorOperator `json:"operator"`
	Values   []string                     `json:"values,omitempty"`
}

// Selection is a service's cluster selection: its selectors, in order,
// and whether traffic may leave them.
type Selection struct {
	Selectors []ClusterSelector `json:"selectors"`
	Strict    bool              `json:"strict,omitempty"`
	// canon is the selection's canonical JSON: exports are compared by it.
	canon string
}

// String is the selection's canonical JSON.
func (s *Selection) String() string {
	if s == nil {
		return ""
	}
	return s.canon
}

// Summary names the selection briefly: "none", or its selectors in
// order ("strict: " first when strict).
func (s *Selection) Summary() string {
	if s == nil {
		return "none"
	}
	parts := make([]string, len(s.Selectors))
	for i, sel := range s.Selectors {
		parts[i] = sel.String()
	}
	out := strings.Join(parts, "; then ")
	if s.Strict {
		out = "strict: " + out
	}
	return out
}

// SelectorResult is the clusters one selector matched for one importer
// (the KEP's ClusterSelectorResult), sorted.
type SelectorResult struct {
	Clusters []ClusterID `json:"clusters"`
}

// selectionFrom reads a ServiceExport's cluster selection from its
// annotations: nil without one, an error (the Valid condition's message)
// when it cannot be used. This is the one place that knows where the
// selection is written; when mcs-api has spec.clusterSelectors, it reads
// that field instead.
func selectionFrom(annotations map[string]string) (*Selection, error) {
	raw, has := annotations[AnnotationClusterSelectors]
	strictRaw, hasStrict := annotations[AnnotationClusterSelectorsStrict]
	strict := false
	if hasStrict {
		var err error
		if strict, err = strconv.ParseBool(strictRaw); err != nil {
			return nil, fmt.Errorf("annotation %s: %q is not true or false", AnnotationClusterSelectorsStrict, strictRaw)
		}
	}
	if !has {
		if strict {
			// Fail closed: a strict service whose selectors are missing
			// (a misspelt annotation) must not send traffic anywhere.
			return nil, fmt.Errorf("annotation %s is true but %s is missing", AnnotationClusterSelectorsStrict, AnnotationClusterSelectors)
		}
		return nil, nil
	}
	var sels []ClusterSelector
	if err := yaml.UnmarshalStrict([]byte(raw), &sels); err != nil {
		return nil, fmt.Errorf("annotation %s: not a list of cluster selectors: %w", AnnotationClusterSelectors, err)
	}
	if err := validateSelectors(sels); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationClusterSelectors, err)
	}
	s := &Selection{Selectors: sels, Strict: strict}
	b, err := json.Marshal(s) // maps marshal with sorted keys: canonical
	if err != nil {
		return nil, err
	}
	s.canon = string(b)
	return s, nil
}

// validateSelectors is the KEP's validation: at most 16 entries, each a
// non-empty propertySelector whose keys are ClusterProperty names and
// whose operators are LabelSelector's, with values where they need them.
func validateSelectors(sels []ClusterSelector) error {
	switch {
	case len(sels) == 0:
		return errors.New("no selector")
	case len(sels) > MaxClusterSelectors:
		return fmt.Errorf("%d selectors, at most %d", len(sels), MaxClusterSelectors)
	}
	for i, s := range sels {
		at := fmt.Sprintf("[%d].propertySelector", i)
		ps := s.PropertySelector
		if ps == nil || len(ps.MatchProperties) == 0 && len(ps.MatchExpressions) == 0 {
			return fmt.Errorf("%s: an empty property selector is invalid", at)
		}
		for k, v := range ps.MatchProperties {
			if err := validKey(k); err != nil {
				return fmt.Errorf("%s.matchProperties: %w", at, err)
			}
			if len(v) > MaxPropertyValue {
				return fmt.Errorf("%s.matchProperties[%s]: value over %d bytes", at, k, MaxPropertyValue)
			}
		}
		for j, r := range ps.MatchExpressions {
			at := fmt.Sprintf("%s.matchExpressions[%d]", at, j)
			if err := validKey(r.Key); err != nil {
				return fmt.Errorf("%s.key: %w", at, err)
			}
			switch r.Operator {
			case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
				if len(r.Values) == 0 {
					return fmt.Errorf("%s: operator %s needs values", at, r.Operator)
				}
			case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
				if len(r.Values) > 0 {
					return fmt.Errorf("%s: operator %s takes no values", at, r.Operator)
				}
			default:
				return fmt.Errorf("%s: operator %q is not In, NotIn, Exists or DoesNotExist", at, r.Operator)
			}
			for _, v := range r.Values {
				if len(v) > MaxPropertyValue {
					return fmt.Errorf("%s: a value over %d bytes", at, MaxPropertyValue)
				}
			}
		}
	}
	return nil
}

// validKey checks a property name: a ClusterProperty's name is a DNS
// subdomain.
func validKey(k string) error {
	if errs := validation.IsDNS1123Subdomain(k); len(errs) > 0 {
		return fmt.Errorf("%q is not a ClusterProperty name: %s", k, errs[0])
	}
	return nil
}

// Select evaluates the selection for one importer: per selector, in
// order, the candidates (exporting clusters) whose properties match
// (props: each cluster's properties). A selector naming @SameAsImporter@
// for a property the importer lacks matches no cluster (KEP-5939).
// Endpoint conditions play no part.
func (s *Selection) Select(importer ClusterID, candidates []ClusterID, props func(ClusterID) map[string]string) []SelectorResult {
	if s == nil {
		return nil
	}
	mine := props(importer)
	out := make([]SelectorResult, len(s.Selectors))
	for i, sel := range s.Selectors {
		reqs, ok := sel.PropertySelector.resolve(mine)
		if !ok {
			out[i].Clusters = []ClusterID{}
			continue
		}
		out[i].Clusters = []ClusterID{}
		for _, c := range candidates {
			if matches(reqs, props(c)) {
				out[i].Clusters = append(out[i].Clusters, c)
			}
		}
		slices.Sort(out[i].Clusters)
	}
	return out
}

// resolve turns the selector into requirements with the importer's values
// for @SameAsImporter@; false when the importer lacks one of them.
func (ps *PropertySelector) resolve(importer map[string]string) ([]PropertySelectorRequirement, bool) {
	var reqs []PropertySelectorRequirement
	for k, v := range ps.MatchProperties {
		reqs = append(reqs, PropertySelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{v}})
	}
	reqs = append(reqs, ps.MatchExpressions...)
	for i := range reqs {
		r := &reqs[i]
		if !slices.Contains(r.Values, SameAsImporter) {
			continue
		}
		mine, has := importer[r.Key]
		if !has {
			return nil, false
		}
		vals := slices.Clone(r.Values)
		for j := range vals {
			if vals[j] == SameAsImporter {
				vals[j] = mine
			}
		}
		r.Values = vals
	}
	return reqs, true
}

// matches applies LabelSelector's semantics to a cluster's properties.
func matches(reqs []PropertySelectorRequirement, props map[string]string) bool {
	for _, r := range reqs {
		v, has := props[r.Key]
		var ok bool
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			ok = has && slices.Contains(r.Values, v)
		case metav1.LabelSelectorOpNotIn:
			ok = !has || !slices.Contains(r.Values, v)
		case metav1.LabelSelectorOpExists:
			ok = has
		case metav1.LabelSelectorOpDoesNotExist:
			ok = !has
		}
		if !ok {
			return false
		}
	}
	return true
}

// SelectorResultsJSON renders results as AnnotationClusterSelectorResults
// holds them.
func SelectorResultsJSON(results []SelectorResult) string {
	b, _ := json.Marshal(results) // plain structs of strings: cannot fail
	return string(b)
}

// Selects reports whether importer may send the service's traffic to
// cluster c at all: always, but under a strict selection that no selector
// of importer's results lists c in.
func (imp *Import) Selects(importer, c ClusterID) bool {
	if imp.Selection == nil || !imp.Selection.Strict {
		return true
	}
	_, outside := Tier(imp.SelectorResults[importer], c)
	return !outside
}

// Tier is where a cluster stands in an importer's selection: the index of
// the first result that lists it, len(results) for a cluster no selector
// matched (and outside, true).
func Tier(results []SelectorResult, c ClusterID) (tier int, outside bool) {
	for i, r := range results {
		if slices.Contains(r.Clusters, c) {
			return i, false
		}
	}
	return len(results), true
}

// String renders one selector briefly, for explain and messages:
// "region.topology.k8s.io=@SameAsImporter@, tier in (gold)".
func (cs ClusterSelector) String() string {
	ps := cs.PropertySelector
	if ps == nil {
		return "(empty)"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(ps.MatchProperties)) {
		parts = append(parts, k+"="+ps.MatchProperties[k])
	}
	for _, r := range ps.MatchExpressions {
		switch r.Operator {
		case metav1.LabelSelectorOpExists:
			parts = append(parts, r.Key)
		case metav1.LabelSelectorOpDoesNotExist:
			parts = append(parts, "!"+r.Key)
		default:
			parts = append(parts, fmt.Sprintf("%s %s (%s)", r.Key, strings.ToLower(string(r.Operator)), strings.Join(r.Values, ",")))
		}
	}
	return strings.Join(parts, ", ")
}
