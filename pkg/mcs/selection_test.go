package mcs

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/about"
)

func annotated(se *mcsv1b1.ServiceExport, kv ...string) *mcsv1b1.ServiceExport {
	se.Annotations = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		se.Annotations[kv[i]] = kv[i+1]
	}
	return se
}

const (
	sameCluster = `{"propertySelector": {"matchExpressions": [{"key": "cluster.clusterset.k8s.io", "operator": "In", "values": ["@SameAsImporter@"]}]}}`
	sameRegion  = `{"propertySelector": {"matchProperties": {"region.topology.k8s.io": "@SameAsImporter@"}}}`
)

// The KEP's selector semantics: matchProperties and matchExpressions
// (In, NotIn, Exists, DoesNotExist) ANDed over ClusterProperties,
// @SameAsImporter@ resolved with the importer's value (no value: no
// match), results in selector order and sorted, whatever the endpoints.
func TestSelectorSemantics(t *testing.T) {
	props := map[ClusterID]map[string]string{
		"a": {"cluster.clusterset.k8s.io": "a", "region.topology.k8s.io": "us", "gpu": "high"},
		"b": {"cluster.clusterset.k8s.io": "b", "region.topology.k8s.io": "us"},
		"c": {"cluster.clusterset.k8s.io": "c", "region.topology.k8s.io": "eu", "gpu": "low"},
		"d": {"cluster.clusterset.k8s.io": "d"},
	}
	get := func(c ClusterID) map[string]string { return props[c] }
	all := []ClusterID{"a", "b", "c", "d"}
	for _, tc := range []struct {
		name     string
		selector string
		importer ClusterID
		want     []ClusterID
	}{
		{"own cluster", sameCluster, "b", []ClusterID{"b"}},
		{"same region", sameRegion, "a", []ClusterID{"a", "b"}},
		{"importer lacks the property: no match", sameRegion, "d", []ClusterID{}},
		{"literal value", `{"propertySelector": {"matchProperties": {"region.topology.k8s.io": "eu"}}}`, "a", []ClusterID{"c"}},
		{"exists", `{"propertySelector": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}`, "d", []ClusterID{"a", "c"}},
		{"does not exist", `{"propertySelector": {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}}`, "a", []ClusterID{"b", "d"}},
		{"not in matches clusters without the key", `{"propertySelector": {"matchExpressions": [{"key": "region.topology.k8s.io", "operator": "NotIn", "values": ["@SameAsImporter@"]}]}}`, "a", []ClusterID{"c", "d"}},
		{"ANDed", `{"propertySelector": {"matchProperties": {"region.topology.k8s.io": "@SameAsImporter@"}, "matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}`, "b", []ClusterID{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := selectionFrom(map[string]string{AnnotationClusterSelectors: "[" + tc.selector + "]"})
			if err != nil {
				t.Fatal(err)
			}
			got := sel.Select(tc.importer, all, get)
			if len(got) != 1 || !slices.Equal(got[0].Clusters, tc.want) {
				t.Errorf("got %v, want [%v]", got, tc.want)
			}
		})
	}
}

// Selectors that cannot be used are refused with the reason the Valid
// condition gives, and a strict flag without selectors fails closed.
func TestSelectionValidation(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        string // "" = valid
	}{
		{"none", nil, ""},
		{"yaml", map[string]string{AnnotationClusterSelectors: "- propertySelector:\n    matchProperties: {region.topology.k8s.io: '@SameAsImporter@'}\n"}, ""},
		{"not a list", map[string]string{AnnotationClusterSelectors: `{"propertySelector": {}}`}, "not a list of cluster selectors"},
		{"unknown field", map[string]string{AnnotationClusterSelectors: `[{"propertySelector": {"matchLabels": {"a": "b"}}}]`}, "not a list of cluster selectors"},
		{"empty list", map[string]string{AnnotationClusterSelectors: `[]`}, "no selector"},
		{"empty selector", map[string]string{AnnotationClusterSelectors: `[{"propertySelector": {}}]`}, "an empty property selector is invalid"},
		{"no property selector", map[string]string{AnnotationClusterSelectors: `[{}]`}, "an empty property selector is invalid"},
		{"bad key", map[string]string{AnnotationClusterSelectors: `[{"propertySelector": {"matchProperties": {"topology.kubernetes.io/region": "x"}}}]`}, "is not a ClusterProperty name"},
		{"bad operator", map[string]string{AnnotationClusterSelectors: `[{"propertySelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}}]`}, "is not In, NotIn, Exists or DoesNotExist"},
		{"In without values", map[string]string{AnnotationClusterSelectors: `[{"propertySelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]`}, "needs values"},
		{"Exists with values", map[string]string{AnnotationClusterSelectors: `[{"propertySelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}]`}, "takes no values"},
		{"too many", map[string]string{AnnotationClusterSelectors: "[" + strings.Repeat(sameRegion+",", 16) + sameRegion + "]"}, "17 selectors, at most 16"},
		{"strict without selectors", map[string]string{AnnotationClusterSelectorsStrict: "true"}, "is missing"},
		{"strict not a bool", map[string]string{AnnotationClusterSelectors: "[" + sameRegion + "]", AnnotationClusterSelectorsStrict: "yes please"}, "is not true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := selectionFrom(tc.annotations)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// The merge follows KEP-5939: an invalid selection makes the export not
// valid (InvalidClusterSelector), a headless Service cannot have one
// (InvalidServiceType), exports that disagree get Conflict
// ClusterSelectorsConflict with the oldest export's selection used, and
// the import holds each importer's results (written on its ServiceImport).
func TestSelectionMerge(t *testing.T) {
	w := newWorld(t)
	for _, m := range []struct{ name, region string }{{"a", "us"}, {"b", "us"}, {"c", "eu"}, {"d", "eu"}} {
		w.upsert(m.name, property(about.PropertyRegion, m.region), namespace("ns"))
	}
	oldest := "[" + sameCluster + "," + sameRegion + "]"
	w.upsert("a", service("ns", "web", port("http", 80)), annotated(export("ns", "web", 0), AnnotationClusterSelectors, oldest))
	w.upsert("b", service("ns", "web", port("http", 80)), annotated(export("ns", "web", time.Second), AnnotationClusterSelectors, "["+sameRegion+"]"))
	w.upsert("c", service("ns", "web", port("http", 80)), annotated(export("ns", "web", 2*time.Second), AnnotationClusterSelectors, oldest))
	st := w.svcState("ns", "web")
	if st.Import == nil || st.Import.Selection.String() == "" || len(st.Import.Selection.Selectors) != 2 {
		t.Fatalf("import selection %+v, want the oldest export's two selectors", st.Import)
	}
	for _, c := range []ClusterID{"a", "b", "c"} {
		wantCond(t, st, c, mcsv1b1.ServiceExportConditionConflict, metav1.ConditionTrue, string(ReasonClusterSelectorsConflict))
	}
	if msg := cond(t, st, "a", mcsv1b1.ServiceExportConditionConflict).Message; !strings.Contains(msg, "b (region.topology.k8s.io=@SameAsImporter@)") {
		t.Errorf("conflict message %q does not name b's selection", msg)
	}
	for importer, want := range map[ClusterID][][]ClusterID{
		"a": {{"a"}, {"a", "b"}},
		"d": {{}, {"c"}},
	} {
		got := st.Import.SelectorResults[importer]
		if len(got) != len(want) {
			t.Fatalf("results for %s: %v, want %v", importer, got, want)
		}
		for i := range want {
			if !slices.Equal(got[i].Clusters, want[i]) {
				t.Errorf("results for %s: %v, want %v", importer, got, want)
			}
		}
	}
	si := ImportObject(st, "d")
	if got, want := si.Annotations[AnnotationClusterSelectorResults], `[{"clusters":[]},{"clusters":["c"]}]`; got != want {
		t.Errorf("d's ServiceImport annotation %s, want %s", got, want)
	}

	// A region changes: the results follow, with no change to any export.
	w.upsert("d", property(about.PropertyRegion, "us"))
	st = w.svcState("ns", "web")
	if got := st.Import.SelectorResults["d"][1].Clusters; !slices.Equal(got, []ClusterID{"a", "b"}) {
		t.Errorf("after d moved to us: %v, want [a b]", got)
	}

	// A typo makes the export invalid: its endpoints get no traffic.
	w.upsert("b", annotated(export("ns", "web", time.Second), AnnotationClusterSelectors, "[{"))
	st = w.svcState("ns", "web")
	wantCond(t, st, "b", mcsv1b1.ServiceExportConditionValid, metav1.ConditionFalse, string(ReasonInvalidClusterSelector))
	if slices.Contains(st.Import.Clusters, "b") {
		t.Errorf("b with invalid selectors is still a constituent: %v", st.Import.Clusters)
	}

	// Headless with selectors: InvalidServiceType.
	headless := service("ns", "db", port("tcp", 5432))
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	w.upsert("a", headless, annotated(export("ns", "db", 0), AnnotationClusterSelectors, "["+sameRegion+"]"))
	st = w.svcState("ns", "db")
	wantCond(t, st, "a", mcsv1b1.ServiceExportConditionValid, metav1.ConditionFalse, string(mcsv1b1.ServiceExportReasonInvalidServiceType))
}

// A strict selection keeps endpoints outside it out of an importer's MCS
// EndpointSlices too (kube-proxy behind the ClusterSet IP would send
// there otherwise); a preferred one keeps every endpoint there.
func TestStrictSelectionSlices(t *testing.T) {
	for _, strict := range []bool{false, true} {
		w := newWorld(t)
		for _, m := range []struct{ name, j string }{{"us", "US"}, {"eu1", "EU"}, {"eu2", "EU"}} {
			ann := []string{AnnotationClusterSelectors, `[{"propertySelector": {"matchProperties": {"jurisdiction.eastwest.io": "@SameAsImporter@"}}}]`}
			if strict {
				ann = append(ann, AnnotationClusterSelectorsStrict, "true")
			}
			w.upsert(m.name, property(about.PropertyJurisdiction, m.j), namespace("ns"), service("ns", "web", port("http", 80)),
				annotated(export("ns", "web", 0), ann...), slice("ns", "web-"+m.name, "web", 2, "http"))
		}
		w.flush()
		sources := sliceSources(w, ServiceKey{"ns", "web"}, "eu1")
		want := []string{"eu1", "eu2", "us"}
		if strict {
			want = []string{"eu1", "eu2"}
		}
		if !slices.Equal(sources, want) {
			t.Errorf("strict=%v: eu1's slices come from %v, want %v", strict, sources, want)
		}
	}
}

// sliceSources are the source clusters of the MCS EndpointSlices an
// importer gets of a service, sorted.
func sliceSources(w *world, key ServiceKey, importer ClusterID) []string {
	var sources []string
	for _, es := range EndpointSlicesFor(w.s.Service(key), importer, w.s.State().Clusters) {
		sources = append(sources, es.Labels[mcsv1b1.LabelSourceCluster])
	}
	slices.Sort(sources)
	return sources
}

// Weights: a declared weight is reported (eastwest.io/Weight Applied, or
// InvalidWeight with the default taken), kept on the member's backend,
// and makes the service weighted.
func TestWeights(t *testing.T) {
	w := newWorld(t)
	w.upsert("a", namespace("ns"), service("ns", "web", port("http", 80)), annotated(export("ns", "web", 0), AnnotationWeight, "90"))
	w.upsert("b", namespace("ns"), service("ns", "web", port("http", 80)), annotated(export("ns", "web", time.Second), AnnotationWeight, "0"))
	w.upsert("c", namespace("ns"), service("ns", "web", port("http", 80)), annotated(export("ns", "web", 2*time.Second), AnnotationWeight, "-3"))
	w.upsert("d", namespace("ns"), service("ns", "web", port("http", 80)), export("ns", "web", 3*time.Second))
	st := w.svcState("ns", "web")
	if !st.Weighted() {
		t.Fatal("service with declared weights is not weighted")
	}
	wantCond(t, st, "a", ConditionWeight, metav1.ConditionTrue, "Applied")
	if msg := cond(t, st, "a", ConditionWeight).Message; !strings.Contains(msg, "weight 90 of 290") {
		t.Errorf("a's weight message %q, want 90 of 290 (90 + 0 + 100 + 100)", msg)
	}
	wantCond(t, st, "b", ConditionWeight, metav1.ConditionTrue, "Applied")
	wantCond(t, st, "c", ConditionWeight, metav1.ConditionFalse, "InvalidWeight")
	wantCond(t, st, "c", mcsv1b1.ServiceExportConditionValid, metav1.ConditionTrue, string(mcsv1b1.ServiceExportReasonValid))
	if es := st.Export("d"); es.Condition(ConditionWeight) != nil {
		t.Errorf("d declares no weight but has %+v", es.Condition(ConditionWeight))
	}
	for c, want := range map[ClusterID]int32{"a": 90, "b": 0, "c": DefaultWeight, "d": DefaultWeight} {
		if got := st.Backend(c).WeightOf(); got != want {
			t.Errorf("%s weighs %d, want %d", c, got, want)
		}
	}
}

// Properties only the operator sets: a member admin who declares its own
// member EU (a name in OperatorProperties) is ignored and told so, and
// does not enter an EU-only strict selection; the operator's value
// (MemberProperties) wins over any member's own, for any property.
func TestOperatorProperties(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		want     []string // the sources of eu1's strict slices
		warnings map[string]int
	}{
		{"members declare", Options{}, []string{"eu1", "eu2", "rogue"}, nil},
		{"operator owns jurisdiction, sets none", Options{OperatorProperties: []string{about.PropertyJurisdiction}},
			nil, map[string]int{"eu1": 1, "eu2": 1, "rogue": 1, "us": 1}},
		{"operator owns jurisdiction, sets eu1 and eu2", Options{
			OperatorProperties: []string{about.PropertyJurisdiction},
			MemberProperties:   map[string]map[string]string{"eu1": {about.PropertyJurisdiction: "EU"}, "eu2": {about.PropertyJurisdiction: "EU"}, "us": {about.PropertyJurisdiction: "US"}},
		}, []string{"eu1", "eu2"}, map[string]int{"rogue": 1}},
		{"operator's value wins without owning the name", Options{
			MemberProperties: map[string]map[string]string{"rogue": {about.PropertyJurisdiction: "US"}},
		}, []string{"eu1", "eu2"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &world{t: t, s: NewStore(tc.opts)}
			for _, m := range []struct{ name, j string }{{"us", "US"}, {"eu1", "EU"}, {"eu2", "EU"}, {"rogue", "EU"}} {
				ann := []string{AnnotationClusterSelectors, `[{"propertySelector": {"matchProperties": {"jurisdiction.eastwest.io": "EU"}}}]`, AnnotationClusterSelectorsStrict, "true"}
				w.upsert(m.name, property(about.PropertyJurisdiction, m.j), namespace("ns"), service("ns", "web", port("http", 80)),
					annotated(export("ns", "web", 0), ann...), slice("ns", "web-"+m.name, "web", 2, "http"))
			}
			w.flush()
			if sources := sliceSources(w, ServiceKey{"ns", "web"}, "eu1"); !slices.Equal(sources, tc.want) {
				t.Errorf("eu1's slices come from %v, want %v", sources, tc.want)
			}
			for _, c := range w.s.State().Clusters {
				if got := len(c.PropertyWarnings); got != tc.warnings[c.Member] {
					t.Errorf("%s has warnings %q, want %d", c.Member, c.PropertyWarnings, tc.warnings[c.Member])
				}
				if want, ok := tc.opts.MemberProperties[c.Member][about.PropertyJurisdiction]; ok && c.Properties[about.PropertyJurisdiction] != want {
					t.Errorf("%s's jurisdiction is %q, want the operator's %q", c.Member, c.Properties[about.PropertyJurisdiction], want)
				}
			}
		})
	}
}

// Properties are bounded: a value over MaxPropertyValue and properties
// beyond MaxProperties are left out with a warning, the ClusterSet's own
// never.
func TestPropertiesBounded(t *testing.T) {
	w := newWorld(t)
	w.upsert("a", property(about.PropertyClusterID, "a"), property("big.example.com", strings.Repeat("x", MaxPropertyValue+1)))
	for i := range MaxProperties + 2 {
		w.upsert("a", property(fmt.Sprintf("p%03d.example.com", i), "v"))
	}
	w.flush()
	info := w.s.State().Clusters[0]
	if len(info.Properties) != MaxProperties || info.Properties[about.PropertyClusterID] != "a" {
		t.Errorf("%d properties (cluster ID %q), want %d with the cluster ID", len(info.Properties), info.Properties[about.PropertyClusterID], MaxProperties)
	}
	if len(info.PropertyWarnings) != 4 || !strings.Contains(info.PropertyWarnings[0], "big.example.com left out") {
		t.Errorf("warnings %v, want the big value and three beyond the bound", info.PropertyWarnings)
	}
}

// Any annotation a member's user writes is either refused with a reason
// or a selection that evaluates, for any importer and properties, to one
// result per selector listing only candidates, sorted; its canonical form
// reads back as the same selection. It never panics.
func FuzzSelection(f *testing.F) {
	f.Add("["+sameCluster+","+sameRegion+"]", "true", "us", "eu")
	f.Add(`[{"propertySelector": {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["@SameAsImporter@", "x"]}]}}]`, "", "x", "")
	f.Add("- propertySelector: {matchProperties: {a: b}}\n", "false", "b", "b")
	f.Add(`[{"propertySelector": null}]`, "1", "", "")
	f.Fuzz(func(t *testing.T, raw, strict, mine, theirs string) {
		ann := map[string]string{AnnotationClusterSelectors: raw}
		if strict != "" {
			ann[AnnotationClusterSelectorsStrict] = strict
		}
		sel, err := selectionFrom(ann)
		if err != nil {
			if sel != nil {
				t.Fatalf("a refused selection came back: %v", sel)
			}
			return
		}
		props := map[ClusterID]map[string]string{
			"a": {"region.topology.k8s.io": mine, "a": mine},
			"b": {"region.topology.k8s.io": theirs, "b": theirs},
			"c": {},
		}
		candidates := []ClusterID{"b", "c"}
		results := sel.Select("a", candidates, func(c ClusterID) map[string]string { return props[c] })
		if len(results) != len(sel.Selectors) {
			t.Fatalf("%d results for %d selectors", len(results), len(sel.Selectors))
		}
		for _, r := range results {
			if !slices.IsSorted(r.Clusters) || slices.ContainsFunc(r.Clusters, func(c ClusterID) bool { return !slices.Contains(candidates, c) }) {
				t.Fatalf("result %v: not sorted, or not among the candidates", r.Clusters)
			}
		}
		var sels []ClusterSelector
		if err := json.Unmarshal([]byte(sel.String()), &struct {
			Selectors *[]ClusterSelector `json:"selectors"`
		}{&sels}); err != nil {
			t.Fatalf("canonical form %s does not read back: %v", sel, err)
		}
		again, err := selectionFrom(map[string]string{AnnotationClusterSelectors: mustJSON(t, sels), AnnotationClusterSelectorsStrict: fmt.Sprint(sel.Strict)})
		if err != nil || again.String() != sel.String() {
			t.Fatalf("canonical form %s reads back as %v (%v)", sel, again, err)
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
