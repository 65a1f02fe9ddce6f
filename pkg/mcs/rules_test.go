package mcs

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Rule 1: an export without a Service is Valid=False/NoService, one of an
// ExternalName Service Valid=False/InvalidServiceType with no import, any
// other Valid=True.
func TestRule1_ExportValidity(t *testing.T) {
	external := service("ns", "web", port("http", 80))
	external.Spec.Type = corev1.ServiceTypeExternalName
	external.Spec.ExternalName = "example.com"
	tests := map[string]struct {
		svc        *corev1.Service
		wantStatus metav1.ConditionStatus
		wantReason string
		wantImport bool
	}{
		"no service":    {nil, metav1.ConditionFalse, "NoService", false},
		"external name": {external, metav1.ConditionFalse, "InvalidServiceType", false},
		"cluster ip":    {service("ns", "web", port("http", 80)), metav1.ConditionTrue, "Valid", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t).upsert("a", namespace("ns"), export("ns", "web", 0))
			if tc.svc != nil {
				w.upsert("a", tc.svc)
			}
			st := w.svcState("ns", "web")
			wantCond(t, st, "a", mcsv1b1.ServiceExportConditionValid, tc.wantStatus, tc.wantReason)
			if got := st.Import != nil; got != tc.wantImport {
				t.Errorf("import present = %v, want %v", got, tc.wantImport)
			}
			ready := cond(t, st, "a", mcsv1b1.ServiceExportConditionReady)
			if (ready.Status == metav1.ConditionTrue) != tc.wantImport {
				t.Errorf("Ready = %s/%s, want True only with an import", ready.Status, ready.Reason)
			}
		})
	}
}

// Rule 1, continued: the same rules hold for v1alpha1 exports, and an
// invalid export becomes valid as soon as its Service appears.
func TestRule1_ExportValidityV1alpha1AndRecovery(t *testing.T) {
	w := newWorld(t).upsert("a", namespace("ns"), &mcsv1a1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}})
	wantCond(t, w.svcState("ns", "web"), "a", mcsv1b1.ServiceExportConditionValid, metav1.ConditionFalse, "NoService")
	w.upsert("a", service("ns", "web", port("http", 80)))
	st := w.svcState("ns", "web")
	wantCond(t, st, "a", mcsv1b1.ServiceExportConditionValid, metav1.ConditionTrue, "Valid")
	wantCond(t, st, "a", mcsv1b1.ServiceExportConditionReady, metav1.ConditionTrue, "Exported")
	if st.Exports[0].APIVersion != mcsv1a1.GroupVersion.String() {
		t.Errorf("export version = %s, want it kept as read", st.Exports[0].APIVersion)
	}
}

// Rule 2: ClusterIP, NodePort and LoadBalancer Services give ClusterSetIP
// imports, headless Services Headless ones.
func TestRule2_ImportType(t *testing.T) {
	tests := map[string]struct {
		typ      corev1.ServiceType
		headless bool
		want     mcsv1b1.ServiceImportType
	}{
		"default":      {"", false, mcsv1b1.ClusterSetIP},
		"cluster ip":   {corev1.ServiceTypeClusterIP, false, mcsv1b1.ClusterSetIP},
		"node port":    {corev1.ServiceTypeNodePort, false, mcsv1b1.ClusterSetIP},
		"loadbalancer": {corev1.ServiceTypeLoadBalancer, false, mcsv1b1.ClusterSetIP},
		"headless":     {corev1.ServiceTypeClusterIP, true, mcsv1b1.Headless},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			svc := service("ns", "web", port("http", 80))
			svc.Spec.Type = tc.typ
			if tc.headless {
				svc.Spec.ClusterIP = corev1.ClusterIPNone
			}
			st := newWorld(t).exported("a", svc, 0).svcState("ns", "web")
			if st.Import == nil || st.Import.Type != tc.want {
				t.Fatalf("import = %+v, want type %s", st.Import, tc.want)
			}
		})
	}
}

// Rule 3: the import exists while at least one cluster validly exports, is
// wanted in every cluster where the namespace exists, lists the exporting
// clusters and takes its metadata from exportedLabels/Annotations only.
func TestRule3_ImportLifecycleAndPlacement(t *testing.T) {
	w := newWorld(t)
	se := export("ns", "web", 0)
	se.Spec.ExportedLabels = map[string]string{"tier": "front"}
	se.Spec.ExportedAnnotations = map[string]string{"note": "yes"}
	w.upsert("a", namespace("ns"), service("ns", "web", port("http", 80)), se)
	w.exported("b", service("ns", "web", port("http", 80)), time.Second)
	w.upsert("c", namespace("ns"))
	w.upsert("d", namespace("other"))

	st := w.svcState("ns", "web")
	if st.Import == nil {
		t.Fatal("no import while two clusters export")
	}
	if got, want := st.Import.ImportedIn, []ClusterID{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("imported in %v, want %v (every cluster with the namespace)", got, want)
	}
	if got, want := st.Import.Clusters, []ClusterID{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("status.clusters %v, want %v", got, want)
	}
	si := ImportObject(st, "a")
	if si.Labels["tier"] != "front" || si.Annotations["note"] != "yes" || si.Labels["svc-label"] != "" {
		t.Errorf("import metadata labels=%v annotations=%v: want the export's exportedLabels/Annotations only", si.Labels, si.Annotations)
	}

	w.remove("a", export("ns", "web", 0))
	st = w.svcState("ns", "web")
	if st.Import == nil || !slices.Equal(st.Import.Clusters, []ClusterID{"b"}) {
		t.Fatalf("after unexport in a: import %+v, want one from b", st.Import)
	}
	w.remove("b", export("ns", "web", 0))
	if st := w.svcState("ns", "web"); st != nil {
		t.Fatalf("after the last unexport: state %+v, want none", st)
	}
}

// Rule 4: every conflicting property is resolved by the oldest export (ties
// by cluster ID) and reported on every constituent export.
func TestRule4_ConflictResolution(t *testing.T) {
	base := func() *corev1.Service { return service("ns", "web", port("http", 80)) }
	local := corev1.ServiceInternalTrafficPolicyLocal
	tests := map[string]struct {
		mutate func(*corev1.Service, *mcsv1b1.ServiceExport)
		reason string
		check  func(*testing.T, *Import)
		// message is in the condition's message: both values, named.
		message string
	}{
		"headlessness": {func(s *corev1.Service, _ *mcsv1b1.ServiceExport) { s.Spec.ClusterIP = corev1.ClusterIPNone }, "TypeConflict",
			func(t *testing.T, i *Import) { want(t, i.Type, mcsv1b1.ClusterSetIP) }, "TypeConflict: b (Headless) differs from the oldest export, cluster z (ClusterSetIP)"},
		"session affinity": {mutate: func(s *corev1.Service, _ *mcsv1b1.ServiceExport) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		},
			reason:  "SessionAffinityConflict",
			check:   func(t *testing.T, i *Import) { want(t, i.SessionAffinity, corev1.ServiceAffinityNone) },
			message: "b (ClientIP) differs from the oldest export, cluster z (None)"},
		"internal traffic policy": {func(s *corev1.Service, _ *mcsv1b1.ServiceExport) { s.Spec.InternalTrafficPolicy = &local }, "InternalTrafficPolicyConflict",
			func(t *testing.T, i *Import) {
				want(t, i.InternalTrafficPolicy, corev1.ServiceInternalTrafficPolicyCluster)
			}, "InternalTrafficPolicyConflict: b (Local)"},
		"traffic distribution": {func(s *corev1.Service, _ *mcsv1b1.ServiceExport) { s.Spec.TrafficDistribution = ptr.To("PreferClose") }, "TrafficDistributionConflict",
			func(t *testing.T, i *Import) { want(t, i.TrafficDistribution, "") }, "b (PreferClose) differs from the oldest export, cluster z (unset)"},
		"ip families": {func(s *corev1.Service, _ *mcsv1b1.ServiceExport) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
		}, "IPFamilyConflict",
			func(t *testing.T, i *Import) { want(t, i.IPFamilies[0], corev1.IPv4Protocol) }, "b (IPv6) differs from the oldest export, cluster z (IPv4)"},
		"labels": {func(_ *corev1.Service, e *mcsv1b1.ServiceExport) { e.Spec.ExportedLabels = map[string]string{"x": "2"} }, "LabelsConflict",
			func(t *testing.T, i *Import) { want(t, i.Labels["x"], "1") }, "LabelsConflict: b differs"},
		"annotations": {func(_ *corev1.Service, e *mcsv1b1.ServiceExport) {
			e.Spec.ExportedAnnotations = map[string]string{"x": "2"}
		}, "AnnotationsConflict",
			func(t *testing.T, i *Import) { want(t, i.Annotations["x"], "1") }, "AnnotationsConflict: b differs"},
		"several at once": {func(s *corev1.Service, e *mcsv1b1.ServiceExport) {
			s.Spec.ClusterIP = corev1.ClusterIPNone
			e.Spec.ExportedLabels = nil
			s.Spec.Ports[0].Port = 81
		}, "PortConflict,TypeConflict,LabelsConflict", func(t *testing.T, i *Import) { want(t, i.Ports[0].Port, int32(80)) }, "PortConflict: b (http/TCP/81) differs from the oldest export, cluster z (http/TCP/80)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// Cluster z is older, so it wins although b sorts first.
			w := newWorld(t)
			old := export("ns", "web", 0)
			old.Spec.ExportedLabels = map[string]string{"x": "1"}
			old.Spec.ExportedAnnotations = map[string]string{"x": "1"}
			w.upsert("z", namespace("ns"), base(), old)
			svc, se := base(), export("ns", "web", time.Minute)
			se.Spec.ExportedLabels = map[string]string{"x": "1"}
			se.Spec.ExportedAnnotations = map[string]string{"x": "1"}
			tc.mutate(svc, se)
			w.upsert("b", namespace("ns"), svc, se)
			st := w.svcState("ns", "web")
			for _, c := range []ClusterID{"b", "z"} {
				wantCond(t, st, c, mcsv1b1.ServiceExportConditionConflict, metav1.ConditionTrue, tc.reason)
				if msg := cond(t, st, c, mcsv1b1.ServiceExportConditionConflict).Message; !strings.Contains(msg, "cluster z") || !strings.Contains(msg, tc.message) {
					t.Errorf("message %q does not name the winning cluster, or lacks %q", msg, tc.message)
				}
			}
			tc.check(t, st.Import)

			// Without the difference there is no conflict.
			w.upsert("b", base(), export("ns", "web", time.Minute))
			w.upsert("z", export("ns", "web", 0))
			st = w.svcState("ns", "web")
			wantCond(t, st, "b", mcsv1b1.ServiceExportConditionConflict, metav1.ConditionFalse, "NoConflicts")
		})
	}
}

// Rule 4, session affinity config: two ClientIP exports with different
// timeouts conflict on the config alone; the oldest export's timeout wins
// (a missing config is the apiserver's default).
func TestRule4_SessionAffinityConfigConflict(t *testing.T) {
	clientIP := func(timeout *int32) *corev1.Service {
		s := service("ns", "web", port("http", 80))
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		if timeout != nil {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: timeout}}
		}
		return s
	}
	w := newWorld(t).exported("b", clientIP(nil), 0).exported("a", clientIP(ptr.To(int32(60))), time.Minute)
	st := w.svcState("ns", "web")
	wantCond(t, st, "a", mcsv1b1.ServiceExportConditionConflict, metav1.ConditionTrue, "SessionAffinityConfigConflict")
	want(t, *st.Import.SessionAffinityConfig.ClientIP.TimeoutSeconds, defaultSessionAffinityTimeout)

	w.upsert("a", clientIP(ptr.To(defaultSessionAffinityTimeout)))
	wantCond(t, w.svcState("ns", "web"), "a", mcsv1b1.ServiceExportConditionConflict, metav1.ConditionFalse, "NoConflicts")
}

// Rule 4, tie-break: exports created at the same second are ordered by
// cluster ID, so the outcome does not depend on event order.
func TestRule4_TieBrokenByClusterID(t *testing.T) {
	for _, order := range [][]string{{"a", "b"}, {"b", "a"}} {
		w := newWorld(t)
		for _, m := range order {
			w.exported(m, service("ns", "web", port("http", map[string]int32{"a": 80, "b": 81}[m])), 0)
		}
		st := w.svcState("ns", "web")
		if got := st.Import.Ports[0].Port; got != 80 {
			t.Errorf("order %v: port %d, want 80 from cluster a", order, got)
		}
	}
}

// Rule 4, ports: the union by name then by (protocol, port), the oldest
// export winning a disagreement, and PortConflict whenever the sets differ
// (also when a cluster only adds a port, as the mcs-api conformance suite
// expects).
func TestRule4_PortMerge(t *testing.T) {
	udp := func(p corev1.ServicePort) corev1.ServicePort { p.Protocol = corev1.ProtocolUDP; return p }
	tests := map[string]struct {
		older, newer []corev1.ServicePort
		want         []mcsv1b1.ServicePort
		conflict     bool
	}{
		"identical": {[]corev1.ServicePort{port("http", 80)}, []corev1.ServicePort{port("http", 80)},
			[]mcsv1b1.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}}, false},
		"extra port is a union and a conflict": {[]corev1.ServicePort{port("http", 80)}, []corev1.ServicePort{port("http", 80), port("grpc", 90)},
			[]mcsv1b1.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}, {Name: "grpc", Protocol: "TCP", Port: 90}}, true},
		"same name other number: oldest wins": {[]corev1.ServicePort{port("http", 80)}, []corev1.ServicePort{port("http", 81)},
			[]mcsv1b1.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}}, true},
		"same number other name: oldest wins": {[]corev1.ServicePort{port("http", 80)}, []corev1.ServicePort{port("web", 80)},
			[]mcsv1b1.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}}, true},
		"same number other protocol: both": {[]corev1.ServicePort{port("", 53)}, []corev1.ServicePort{udp(port("", 53))},
			[]mcsv1b1.ServicePort{{Protocol: "TCP", Port: 53}, {Protocol: "UDP", Port: 53}}, true},
		"different order is no conflict": {[]corev1.ServicePort{port("a", 1), port("b", 2)}, []corev1.ServicePort{port("b", 2), port("a", 1)},
			[]mcsv1b1.ServicePort{{Name: "a", Protocol: "TCP", Port: 1}, {Name: "b", Protocol: "TCP", Port: 2}}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t).exported("b", service("ns", "web", tc.older...), 0).exported("a", service("ns", "web", tc.newer...), time.Hour)
			st := w.svcState("ns", "web")
			var got []mcsv1b1.ServicePort
			for _, p := range st.Import.Ports {
				got = append(got, p.ServicePort)
			}
			if !slices.EqualFunc(got, tc.want, equalPort) {
				t.Errorf("ports %+v, want %+v", got, tc.want)
			}
			wantReason := "NoConflicts"
			status := metav1.ConditionFalse
			if tc.conflict {
				wantReason, status = "PortConflict", metav1.ConditionTrue
			}
			wantCond(t, st, "a", mcsv1b1.ServiceExportConditionConflict, status, wantReason)
			wantCond(t, st, "b", mcsv1b1.ServiceExportConditionConflict, status, wantReason)
		})
	}
}

// Rule 5: a port's traffic goes only to clusters whose Service exposes that
// exact port; the MCS slices carry only those ports.
func TestRule5_PerPortBackends(t *testing.T) {
	w := newWorld(t).
		exported("a", service("ns", "web", port("http", 80)), 0).
		exported("b", service("ns", "web", port("http", 80), port("grpc", 90)), time.Minute).
		exported("c", service("ns", "web", port("http", 81)), 2*time.Minute).
		upsert("a", slice("ns", "web-a", "web", 2, "http")).
		upsert("b", slice("ns", "web-b", "web", 2, "http", "grpc")).
		upsert("c", slice("ns", "web-c", "web", 2, "http"))
	st := w.svcState("ns", "web")
	got := map[string][]ClusterID{}
	for _, p := range st.Import.Ports {
		got[p.Name] = p.Clusters
	}
	if !slices.Equal(got["http"], []ClusterID{"a", "b"}) || !slices.Equal(got["grpc"], []ClusterID{"b"}) {
		t.Errorf("port clusters %v: want http from a,b (not c, whose http is 81) and grpc from b", got)
	}
	for _, es := range EndpointSlicesFor(st, "a", nil) {
		var names []string
		for _, p := range es.Ports {
			names = append(names, *p.Name)
		}
		want := map[string][]string{"a": {"http"}, "b": {"http", "grpc"}}[es.Labels[mcsv1b1.LabelSourceCluster]]
		if !slices.Equal(names, want) {
			t.Errorf("slice from %s has ports %v, want %v", es.Labels[mcsv1b1.LabelSourceCluster], names, want)
		}
	}
}

// Rule 6: endpoints come from the exported Service's EndpointSlices (by the
// kubernetes.io/service-name label) with every address family, ports,
// conditions, zone and hostname.
func TestRule6_EndpointsFromSlices(t *testing.T) {
	v6 := slice("ns", "web-v6", "web", 0, "http")
	v6.AddressType = discoveryv1.AddressTypeIPv6
	f, tr := false, true
	v6.Endpoints = []discoveryv1.Endpoint{
		{Addresses: []string{"fd00::1"}, Hostname: ptr.To("web-0"), Zone: ptr.To("z1")},
		{Addresses: []string{"fd00::2"}, Conditions: discoveryv1.EndpointConditions{Ready: &f, Serving: &tr, Terminating: &tr}},
		{Addresses: []string{"fd00::3"}, Conditions: discoveryv1.EndpointConditions{Ready: &f}},
	}
	unrelated := slice("ns", "other-1", "other", 5, "http")
	noLabel := slice("ns", "nolabel", "", 5, "http")
	delete(noLabel.Labels, discoveryv1.LabelServiceName)
	w := newWorld(t).exported("a", service("ns", "web", port("http", 80)), 0).
		upsert("a", slice("ns", "web-v4", "web", 3, "http"), v6, unrelated, noLabel)
	b := w.svcState("ns", "web").Backend("a")
	if len(b.Slices) != 2 {
		t.Fatalf("slices %d, want the two of web", len(b.Slices))
	}
	got := b.Slices[1] // sorted by name: web-v4, web-v6
	if got.AddressType != discoveryv1.AddressTypeIPv6 || got.Len() != 3 {
		t.Fatalf("v6 slice %+v", got)
	}
	want := []Endpoint{
		{Addresses: []string{"fd00::1"}, Ready: true, Serving: true, Hostname: "web-0", Zone: "z1"},
		{Addresses: []string{"fd00::2"}, Serving: true, Terminating: true},
		{Addresses: []string{"fd00::3"}},
	}
	for i := range want {
		e := got.Endpoint(i)
		if !slices.Equal(e.Addresses, want[i].Addresses) || e.Ready != want[i].Ready || e.Serving != want[i].Serving ||
			e.Terminating != want[i].Terminating || e.Hostname != want[i].Hostname || e.Zone != want[i].Zone {
			t.Errorf("endpoint %d = %+v, want %+v", i, e, want[i])
		}
	}
	if n, ok := got.Port("http", corev1.ProtocolTCP); !ok || n != 8000 {
		t.Errorf("target port %d %v, want 8000", n, ok)
	}

	// Relabelling a slice to another service moves it.
	moved := slice("ns", "web-v4", "other", 3, "http")
	w.upsert("a", moved)
	if b := w.svcState("ns", "web").Backend("a"); len(b.Slices) != 1 {
		t.Errorf("after relabel: %d slices, want 1", len(b.Slices))
	}
}

// Rule 7: the MCS EndpointSlices of an importing cluster hold one source
// cluster each, carry the MCS labels and our managed-by, at most 100
// endpoints, and keep their names while their source does.
func TestRule7_MCSEndpointSlices(t *testing.T) {
	w := newWorld(t).
		exported("a", service("ns", "web", port("http", 80)), 0).
		exported("b", service("ns", "web", port("http", 80)), time.Minute).
		upsert("a", slice("ns", "web-a", "web", 250, "http")).
		upsert("b", slice("ns", "web-b", "web", 3, "http")).
		upsert("c", namespace("ns"))
	st := w.svcState("ns", "web")
	got := EndpointSlicesFor(st, "c", nil)
	if len(got) != 4 {
		t.Fatalf("%d slices, want 3 for a (250 endpoints) and 1 for b", len(got))
	}
	perCluster := map[string]int{}
	names := map[string]bool{}
	for _, es := range got {
		if n := len(es.Endpoints); n > MaxEndpointsPerSlice {
			t.Errorf("%s holds %d endpoints", es.Name, n)
		}
		src := es.Labels[mcsv1b1.LabelSourceCluster]
		perCluster[src] += len(es.Endpoints)
		if es.Labels[mcsv1b1.LabelServiceName] != "web" || es.Labels[discoveryv1.LabelManagedBy] != ControllerName {
			t.Errorf("%s labels %v", es.Name, es.Labels)
		}
		if names[es.Name] {
			t.Errorf("duplicate name %s", es.Name)
		}
		names[es.Name] = true
	}
	if perCluster["a"] != 250 || perCluster["b"] != 3 {
		t.Errorf("endpoints per source cluster %v", perCluster)
	}
	if EndpointSlicesFor(st, "d", nil) != nil {
		t.Error("a cluster that does not import the service gets slices")
	}

	// Names are stable: another endpoint in b leaves every name in place.
	w.upsert("b", slice("ns", "web-b", "web", 4, "http"))
	for _, es := range EndpointSlicesFor(w.svcState("ns", "web"), "c", nil) {
		if !names[es.Name] {
			t.Errorf("name %s changed after an endpoint change", es.Name)
		}
	}
	// Our own slices, read back from a cluster, are not endpoints.
	own := got[0].DeepCopy()
	w.upsert("a", own)
	if b := w.svcState("ns", "web").Backend("a"); len(b.Slices) != 1 {
		t.Errorf("eastwest's own MCS slice was read back as an endpoint source")
	}
}

// Rule 8: unexport, Service deletion, namespace deletion and a cluster
// leaving remove exactly what they should.
func TestRule8_Removal(t *testing.T) {
	setup := func(t *testing.T) *world {
		return newWorld(t).
			exported("a", service("ns", "web", port("http", 80)), 0).
			exported("b", service("ns", "web", port("http", 80)), time.Minute).
			exported("b", service("ns", "api", port("http", 80)), time.Minute).
			upsert("a", slice("ns", "web-a", "web", 2, "http")).
			upsert("b", slice("ns", "web-b", "web", 2, "http")).
			upsert("c", namespace("ns"))
	}
	type expect struct {
		webClusters, webImportedIn []ClusterID
		apiPresent                 bool
	}
	tests := map[string]struct {
		change func(*world)
		want   expect
	}{
		"unexport in b": {func(w *world) { w.remove("b", export("ns", "web", 0)) },
			expect{[]ClusterID{"a"}, []ClusterID{"a", "b", "c"}, true}},
		"service deleted in b": {func(w *world) { w.remove("b", service("ns", "web")) },
			expect{[]ClusterID{"a"}, []ClusterID{"a", "b", "c"}, true}},
		"namespace deleted in b": {func(w *world) { w.remove("b", namespace("ns")) },
			expect{[]ClusterID{"a"}, []ClusterID{"a", "c"}, false}},
		"namespace terminating in c": {func(w *world) {
			ns := namespace("ns")
			ns.Status.Phase = corev1.NamespaceTerminating
			w.upsert("c", ns)
		}, expect{[]ClusterID{"a", "b"}, []ClusterID{"a", "b"}, true}},
		"cluster b leaves": {func(w *world) { w.leave("b") },
			expect{[]ClusterID{"a"}, []ClusterID{"a", "c"}, false}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := setup(t)
			w.flush()
			tc.change(w)
			w.flush()
			web := w.s.Service(ServiceKey{"ns", "web"})
			if !slices.Equal(web.Import.Clusters, tc.want.webClusters) || !slices.Equal(web.Import.ImportedIn, tc.want.webImportedIn) {
				t.Errorf("web exported by %v imported in %v, want %v in %v", web.Import.Clusters, web.Import.ImportedIn, tc.want.webClusters, tc.want.webImportedIn)
			}
			for _, b := range web.Backends {
				if !slices.Contains(tc.want.webClusters, b.Cluster) {
					t.Errorf("backend of %s kept", b.Cluster)
				}
			}
			if got := w.s.Service(ServiceKey{"ns", "api"}) != nil && w.s.Service(ServiceKey{"ns", "api"}).Import != nil; got != tc.want.apiPresent {
				t.Errorf("api import present %v, want %v", got, tc.want.apiPresent)
			}
			if a := web.Backend("a"); a == nil || len(a.Slices) != 1 {
				t.Errorf("cluster a's endpoints changed: %+v", a)
			}
		})
	}
}

func want[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

// The Store is incremental: a Flush merges only the services touched since
// the last one, and reports exactly those.
func TestStoreRecomputesOnlyTouchedServices(t *testing.T) {
	w := newWorld(t)
	for _, name := range []string{"a", "b", "c"} {
		w.exported("east", service("ns", name, port("http", 80)), 0)
	}
	if ch := w.flush(); len(ch.Services) != 3 || !ch.Clusters {
		t.Fatalf("first flush %+v", ch)
	}
	before := w.s.Service(ServiceKey{"ns", "a"})
	w.upsert("east", slice("ns", "b-1", "b", 3, "http"))
	ch := w.flush()
	if !slices.Equal(ch.Services, []ServiceKey{{"ns", "b"}}) || ch.Clusters {
		t.Errorf("after one slice: changes %+v, want only ns/b", ch)
	}
	if w.s.Service(ServiceKey{"ns", "a"}) != before {
		t.Error("an untouched service was merged again")
	}
	if ch := w.flush(); !ch.Empty() {
		t.Errorf("a flush without events changed %+v", ch)
	}
	snap := w.s.State()
	w.upsert("east", slice("ns", "b-1", "b", 4, "http"))
	w.flush()
	if snap.Services.Get(ServiceKey{"ns", "b"}).Backends[0].Slices[0].Len() != 3 {
		t.Error("a snapshot changed after it was handed out")
	}
}
