package multicluster

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/pkg/writeback"
)

// TestMCS runs one ClusterSet of three real clusters and checks each
// behaviour in its own namespace. Cluster IDs are the kubeconfig file
// names a, b and c.
func TestMCS(t *testing.T) {
	cs := startClusterSet(t)
	a, b, c := cs.members[0], cs.members[1], cs.members[2]

	t.Run("1 an import exists while one cluster exports and is deleted after the last unexport", func(t *testing.T) {
		ns := "t1"
		for _, m := range []*member{a, b} {
			m.service(t, clusterIPService(ns, "hello"))
			m.export(t, ns, "hello")
		}
		a.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
			if len(si.Status.Clusters) != 2 {
				return fmt.Errorf("status.clusters %v", si.Status.Clusters)
			}
			return nil
		})
		a.unexport(t, ns, "hello")
		a.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
			if len(si.Status.Clusters) != 1 || si.Status.Clusters[0].Cluster != "b" {
				return fmt.Errorf("status.clusters %v, want [b]", si.Status.Clusters)
			}
			return nil
		})
		b.unexport(t, ns, "hello")
		a.noImport(t, ns, "hello")
		b.noImport(t, ns, "hello")
	})

	t.Run("2 a ClusterIP export gives a ClusterSetIP import wherever the namespace exists", func(t *testing.T) {
		ns := "t2"
		a.service(t, clusterIPService(ns, "hello"))
		b.namespace(t, ns)
		a.export(t, ns, "hello")
		for _, m := range []*member{a, b} {
			m.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
				if si.Spec.Type != mcsv1b1.ClusterSetIP || len(si.Spec.IPs) != 1 {
					return fmt.Errorf("type %s ips %v", si.Spec.Type, si.Spec.IPs)
				}
				if d := si.Annotations[writeback.AnnotationDerivedService]; d != writeback.DerivedName(mcs.ServiceKey{Namespace: ns, Name: "hello"}) {
					return fmt.Errorf("derived-service annotation %q", d)
				}
				return nil
			})
		}
		// The pass that wrote a's and b's imports has visited c too.
		cs.writtenBack(t)
		if _, err := c.getImport(ns, "hello"); err == nil {
			t.Error("c, which lacks the namespace, got an import")
		}
		// Nor do c's xDS clients and gateway get the service: they
		// are served what c imports.
		key := mcs.ServiceKey{Namespace: ns, Name: "hello"}
		cView, bView := controlplane.ViewName("c", translate.RoleClient), controlplane.ViewName("b", translate.RoleGateway)
		if !serves(cs.app, bView, translate.ClusterName(key, 80)) {
			t.Errorf("%s does not serve %s", bView, key)
		}
		if serves(cs.app, cView, translate.ClusterName(key, 80)) {
			t.Errorf("%s serves %s, which c does not import", cView, key)
		}
		c.namespace(t, ns)
		c.importIs(t, ns, "hello", nil)
		testkit.Eventually(t, cView+" serves the service once c has the namespace", func() error {
			if !serves(cs.app, cView, translate.ClusterName(key, 80)) {
				return fmt.Errorf("not served")
			}
			return nil
		})
	})

	t.Run("3 session affinity, its config, traffic policy and distribution follow the Service", func(t *testing.T) {
		ns := "t3"
		svc := clusterIPService(ns, "hello")
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(300))}}
		svc.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
		svc.Spec.TrafficDistribution = ptr("PreferClose")
		a.service(t, svc)
		a.export(t, ns, "hello")
		a.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
			switch {
			case si.Spec.SessionAffinity != corev1.ServiceAffinityClientIP:
				return fmt.Errorf("affinity %s", si.Spec.SessionAffinity)
			case si.Spec.SessionAffinityConfig == nil || *si.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != 300:
				return fmt.Errorf("affinity config %+v", si.Spec.SessionAffinityConfig)
			case si.Spec.InternalTrafficPolicy == nil || *si.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyLocal:
				return fmt.Errorf("internal traffic policy %v", si.Spec.InternalTrafficPolicy)
			case si.Spec.TrafficDistribution == nil || *si.Spec.TrafficDistribution != "PreferClose":
				return fmt.Errorf("traffic distribution %v", si.Spec.TrafficDistribution)
			}
			return nil
		})
	})

	t.Run("4 one IP per IP family, in the families' order", func(t *testing.T) {
		ns := "t4"
		svc := clusterIPService(ns, "dual")
		svc.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyRequireDualStack)
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		a.service(t, svc)
		a.export(t, ns, "dual")
		a.importIs(t, ns, "dual", func(si *mcsv1b1.ServiceImport) error {
			if len(si.Spec.IPs) != 2 || !strings.Contains(si.Spec.IPs[0], ":") || strings.Contains(si.Spec.IPs[1], ":") {
				return fmt.Errorf("ips %v for families %v, want IPv6 then IPv4", si.Spec.IPs, si.Spec.IPFamilies)
			}
			return nil
		})
	})

	t.Run("5 ports match the Service; an extra port elsewhere is a union and a conflict on both", func(t *testing.T) {
		ns := "t5"
		a.service(t, clusterIPService(ns, "hello"))
		a.export(t, ns, "hello")
		a.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
			if got := portsOf(si); !slices.Equal(got, []string{"http/TCP/80"}) {
				return fmt.Errorf("ports %v", got)
			}
			return nil
		})
		time.Sleep(1100 * time.Millisecond) // a's export is older
		b.service(t, clusterIPService(ns, "hello", corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "stcp", Port: 142, Protocol: corev1.ProtocolSCTP}))
		b.export(t, ns, "hello")
		a.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
			if got := portsOf(si); !slices.Equal(got, []string{"http/TCP/80", "stcp/SCTP/142"}) {
				return fmt.Errorf("ports %v, want the union", got)
			}
			return nil
		})
		a.condition(t, ns, "hello", "Conflict", metav1.ConditionTrue, "PortConflict")
		b.condition(t, ns, "hello", "Conflict", metav1.ConditionTrue, "PortConflict")
	})

	t.Run("6 the same port name with another number: conflict on both, the oldest export's port wins", func(t *testing.T) {
		ns := "t6"
		b.service(t, clusterIPService(ns, "hello", corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}))
		b.export(t, ns, "hello")
		b.importIs(t, ns, "hello", nil)
		time.Sleep(1100 * time.Millisecond)
		a.service(t, clusterIPService(ns, "hello", corev1.ServicePort{Name: "http", Port: 81, Protocol: corev1.ProtocolTCP}))
		a.export(t, ns, "hello")
		a.condition(t, ns, "hello", "Conflict", metav1.ConditionTrue, "PortConflict")
		b.condition(t, ns, "hello", "Conflict", metav1.ConditionTrue, "PortConflict")
		a.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
			if got := portsOf(si); !slices.Equal(got, []string{"http/TCP/80"}) {
				return fmt.Errorf("ports %v, want b's (older)", got)
			}
			return nil
		})
	})

	t.Run("7 a headless export gives a Headless import without IPs", func(t *testing.T) {
		ns := "t7"
		svc := clusterIPService(ns, "db")
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		a.service(t, svc)
		a.export(t, ns, "db")
		a.importIs(t, ns, "db", func(si *mcsv1b1.ServiceImport) error {
			if si.Spec.Type != mcsv1b1.Headless || len(si.Spec.IPs) != 0 {
				return fmt.Errorf("type %s ips %v", si.Spec.Type, si.Spec.IPs)
			}
			return nil
		})
		if _, err := a.Client.CoreV1().Services(ns).Get(ctx, writeback.DerivedName(mcs.ServiceKey{Namespace: ns, Name: "db"}), metav1.GetOptions{}); err == nil {
			t.Error("a headless import got a derived Service")
		}
	})

	t.Run("8 an ExternalName export is Valid=False and gives no import", func(t *testing.T) {
		ns := "t8"
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}
		a.service(t, svc)
		a.export(t, ns, "ext")
		a.condition(t, ns, "ext", "Valid", metav1.ConditionFalse, "InvalidServiceType")
		// The write-back decides the import before it writes the
		// export's conditions.
		if _, err := a.getImport(ns, "ext"); err == nil {
			t.Error("an ExternalName export was imported")
		}
	})

	t.Run("9 conflicting headlessness: conflict on both, the oldest wins", func(t *testing.T) {
		ns := "t9"
		a.service(t, clusterIPService(ns, "hello"))
		a.export(t, ns, "hello")
		a.importIs(t, ns, "hello", nil)
		time.Sleep(1100 * time.Millisecond)
		svc := clusterIPService(ns, "hello")
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		b.service(t, svc)
		b.export(t, ns, "hello")
		a.condition(t, ns, "hello", "Conflict", metav1.ConditionTrue, "TypeConflict")
		b.condition(t, ns, "hello", "Conflict", metav1.ConditionTrue, "TypeConflict")
		b.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
			if si.Spec.Type != mcsv1b1.ClusterSetIP {
				return fmt.Errorf("type %s, want a's ClusterSetIP", si.Spec.Type)
			}
			return nil
		})
	})

	t.Run("10 exported labels and annotations propagate, and conflict", func(t *testing.T) {
		ns := "t10"
		a.service(t, clusterIPService(ns, "hello"))
		a.export(t, ns, "hello", func(se *mcsv1b1.ServiceExport) {
			se.Spec.ExportedLabels = map[string]string{"dummy-label": "true"}
			se.Spec.ExportedAnnotations = map[string]string{"dummy-annotation": "true"}
		})
		a.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
			if si.Labels["dummy-label"] != "true" || si.Annotations["dummy-annotation"] != "true" || si.Labels["svc-label"] != "" {
				return fmt.Errorf("labels %v annotations %v", si.Labels, si.Annotations)
			}
			return nil
		})
		time.Sleep(1100 * time.Millisecond)
		b.service(t, clusterIPService(ns, "hello"))
		b.export(t, ns, "hello", func(se *mcsv1b1.ServiceExport) {
			se.Spec.ExportedLabels = map[string]string{"dummy-label2": "true"}
			se.Spec.ExportedAnnotations = map[string]string{"dummy-annotation2": "true"}
		})
		a.condition(t, ns, "hello", "Conflict", metav1.ConditionTrue, "LabelsConflict,AnnotationsConflict")
		b.condition(t, ns, "hello", "Conflict", metav1.ConditionTrue, "LabelsConflict,AnnotationsConflict")
		b.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
			if si.Labels["dummy-label"] != "true" || si.Labels["dummy-label2"] != "" || si.Annotations["dummy-annotation2"] != "" {
				return fmt.Errorf("labels %v annotations %v, want a's", si.Labels, si.Annotations)
			}
			return nil
		})
	})

	t.Run("11 MCS EndpointSlices carry the MCS labels and managed-by, and go with the export", func(t *testing.T) {
		ns := "t11"
		a.service(t, clusterIPService(ns, "hello"))
		a.slice(t, ns, "hello", true, "10.1.0.1", "10.1.0.2")
		a.export(t, ns, "hello")
		c.namespace(t, ns)
		selector := fmt.Sprintf("%s=%s,%s=hello", discoveryv1.LabelManagedBy, mcs.ControllerName, mcsv1b1.LabelServiceName)
		testkit.Eventually(t, "MCS EndpointSlice in c", func() error {
			list, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return err
			}
			if len(list.Items) != 1 {
				return fmt.Errorf("%d slices", len(list.Items))
			}
			s := list.Items[0]
			if s.Labels[mcsv1b1.LabelSourceCluster] != "a" || s.Labels[discoveryv1.LabelServiceName] != writeback.DerivedName(mcs.ServiceKey{Namespace: ns, Name: "hello"}) || len(s.Endpoints) != 2 {
				return fmt.Errorf("slice %+v", s)
			}
			return nil
		})
		a.unexport(t, ns, "hello")
		testkit.Eventually(t, "MCS EndpointSlices deleted", func() error {
			for _, m := range []*member{a, c} {
				list, err := m.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
				if err != nil {
					return err
				}
				if len(list.Items) != 0 {
					return fmt.Errorf("%s still holds %d", m.Name, len(list.Items))
				}
			}
			return nil
		})
		c.noImport(t, ns, "hello")
	})

	// Last: it puts c on a network of its own for the rest of the run.
	t.Run("12 across networks a member's MCS EndpointSlices list its own network's endpoints and its gateway pods on relay ports, and exports say whether other networks reach them", func(t *testing.T) {
		ns := "t12"
		for _, m := range []*member{a, c} {
			m.service(t, clusterIPService(ns, "hello"))
			m.export(t, ns, "hello")
		}
		a.slice(t, ns, "hello", true, "10.1.0.1")
		c.slice(t, ns, "hello", true, "10.3.0.1")
		// a's east-west gateway (one pod), and c's, on another network.
		for _, m := range []*member{a, c} {
			gw := clusterIPService("eastwest-system", "eastwest-gateway", corev1.ServicePort{Name: "tunnel", Port: 15443, Protocol: corev1.ProtocolTCP})
			gw.Labels = map[string]string{mcs.LabelGateway: "true"}
			gw.Spec.ExternalIPs = []string{"192.0.2.1"}
			m.service(t, gw)
		}
		a.slice(t, "eastwest-system", "eastwest-gateway", true, "10.1.9.9")
		// a's gateways hold a tunnel certificate (without one other
		// networks cannot reach a, and its exports say so).
		a.tunnelSecret(t, "a")
		network := func(m *member, name string) {
			t.Helper()
			prop := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
				"metadata": map[string]any{"name": about.PropertyNetwork},
				"spec":     map[string]any{"value": name},
			}}
			gvr := schema.GroupVersionResource{Group: "about.k8s.io", Version: "v1alpha1", Resource: "clusterproperties"}
			if _, err := m.Dynamic.Resource(gvr).Create(ctx, prop, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		network(c, "far")
		selector := fmt.Sprintf("%s=%s,%s=hello", discoveryv1.LabelManagedBy, mcs.ControllerName, mcsv1b1.LabelServiceName)
		var relay int32
		a.importIs(t, ns, "hello", nil)
		testkit.Eventually(t, "a's MCS EndpointSlices: its own endpoints and its gateway pod on the relay port", func() error {
			list, err := a.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return err
			}
			var got []string
			for _, s := range list.Items {
				for _, e := range s.Endpoints {
					got = append(got, fmt.Sprintf("%s:%d", e.Addresses[0], *s.Ports[0].Port))
				}
				if s.Labels[mcs.LabelRelay] == "true" {
					relay = *s.Ports[0].Port
				}
			}
			slices.Sort(got)
			if relay < mcs.RelayPortMin || !slices.Equal(got, []string{"10.1.0.1:8080", fmt.Sprintf("10.1.9.9:%d", relay)}) {
				return fmt.Errorf("endpoints %v (relay port %d), want a's pod and a's gateway pod on a relay port, not c's 10.3.0.1", got, relay)
			}
			return nil
		})
		// Exports say whether other networks reach their member: b has no
		// gateway at all.
		b.service(t, clusterIPService(ns, "hello"))
		b.export(t, ns, "hello")
		a.condition(t, ns, "hello", mcs.ConditionReachable, metav1.ConditionTrue, "GatewayAddresses")
		b.condition(t, ns, "hello", mcs.ConditionReachable, metav1.ConditionFalse, "NoGatewayAddress")
		// c has no gateway pods: a's endpoints are left out, nothing
		// replaces them.
		testkit.Eventually(t, "c's MCS EndpointSlices: its own endpoints only", func() error {
			list, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return err
			}
			if len(list.Items) != 1 || list.Items[0].Labels[mcsv1b1.LabelSourceCluster] != "c" {
				return fmt.Errorf("%d slices, want c's own only", len(list.Items))
			}
			return nil
		})
	})

	// After 12: a has an east-west gateway in eastwest-system and c is on
	// another network. Finding 1 of the trust-boundaries issue: a user
	// with the ordinary edit role in namespace aaa (which sorts before
	// eastwest-system) labels a Service of theirs as an east-west gateway,
	// with addresses, a pod and a tunnel Secret of their own CA. Before the
	// fix the first labelled Service by (namespace, name) supplied the
	// member's tunnel Secret and local gateway, and every one added
	// gateway addresses and pods; now only the gateway namespace counts.
	t.Run("13 a namespace user with the edit role cannot declare an east-west gateway", func(t *testing.T) {
		ns := "aaa"
		a.namespace(t, ns)
		// edit aggregates these two; no controller manager runs here to
		// aggregate them into edit itself.
		tenant := a.impersonate(t, "alice", ns, "system:aggregate-to-edit", "system:aggregate-to-view")
		evil := clusterIPService(ns, "evil",
			corev1.ServicePort{Name: mcs.TunnelPortName, Port: 15443, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: mcs.GatewayHTTPPortName, Port: 15080, Protocol: corev1.ProtocolTCP})
		evil.Labels = map[string]string{mcs.LabelGateway: "true"}
		evil.Spec.ExternalIPs = []string{"198.51.100.66"}
		if _, err := tenant.CoreV1().Services(ns).Create(ctx, evil, metav1.CreateOptions{}); err != nil {
			t.Fatalf("the edit role may create Services in its namespace: %v", err)
		}
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "evil-1", Labels: map[string]string{discoveryv1.LabelServiceName: "evil"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.66.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
		}
		if _, err := tenant.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
			// edit cannot write EndpointSlices on every version; the
			// Service and Secret are the attack then.
			t.Logf("the edit role may not create EndpointSlices here: %v", err)
		}
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: mcs.DefaultTunnelSecret}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: []byte("tenant chain"), corev1.TLSPrivateKeyKey: []byte("tenant key"), "ca.crt": []byte("tenant CA")}}
		if _, err := tenant.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
			t.Fatalf("the edit role may create Secrets in its namespace: %v", err)
		}
		var info mcs.ClusterInfo
		testkit.Eventually(t, "a reports the tenant's Service as an ignored gateway", func() error {
			for _, c := range cs.app.Writer.Snapshot().State.Clusters {
				if c.Member == "a" {
					info = c
				}
			}
			if !slices.Equal(info.IgnoredGateways, []string{"aaa/evil"}) {
				return fmt.Errorf("ignored gateways %v", info.IgnoredGateways)
			}
			return nil
		})
		if want := []mcs.GatewayAddress{{Address: "192.0.2.1", Port: 15443, Service: "eastwest-system/eastwest-gateway"}}; !slices.Equal(info.Gateways, want) {
			t.Errorf("a's gateway addresses %v, want the operator's only %v", info.Gateways, want)
		}
		if !slices.Equal(info.GatewayPods, []string{"10.1.9.9"}) || info.TunnelSecret != "eastwest-system/"+mcs.DefaultTunnelSecret || info.LocalGateway != nil {
			t.Errorf("a's gateway pods %v, tunnel Secret %q, local gateway %v: want the operator's gateway's alone", info.GatewayPods, info.TunnelSecret, info.LocalGateway)
		}
		families, err := cs.app.Metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, f := range families {
			if f.GetName() == "eastwest_ignored_gateway_services" {
				for _, m := range f.GetMetric() {
					got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
		if want := map[string]float64{"a": 1, "b": 0, "c": 0}; !maps.Equal(got, want) {
			t.Errorf("eastwest_ignored_gateway_services by member %v, want %v", got, want)
		}
	})

	// Cluster selection (KEP-5939) from real objects: regions from
	// v1beta1 ClusterProperties, selectors from the exports' annotation;
	// the write-back leader reports a conflict on every export, an
	// invalid selector on its own, and writes each importer's results on
	// its ServiceImport.
	t.Run("14 cluster selectors: properties, conflicts, invalid selectors and each importer's results", func(t *testing.T) {
		ns := "t14"
		region := func(m *member, value string) {
			t.Helper()
			prop := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "about.k8s.io/v1beta1", "kind": "ClusterProperty",
				"metadata": map[string]any{"name": about.PropertyRegion},
				"spec":     map[string]any{"value": value},
			}}
			gvr := schema.GroupVersionResource{Group: "about.k8s.io", Version: "v1beta1", Resource: "clusterproperties"}
			if _, err := m.Dynamic.Resource(gvr).Create(ctx, prop, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		region(a, "r1")
		region(b, "r1")
		region(c, "r2")
		sameRegion := `[{"propertySelector": {"matchProperties": {"region.topology.k8s.io": "@SameAsImporter@"}}}]`
		ownFirst := `[{"propertySelector": {"matchExpressions": [{"key": "cluster.clusterset.k8s.io", "operator": "In", "values": ["@SameAsImporter@"]}]}}]`
		annotate := func(v string) func(*mcsv1b1.ServiceExport) {
			return func(se *mcsv1b1.ServiceExport) {
				se.Annotations = map[string]string{mcs.AnnotationClusterSelectors: v}
			}
		}
		for _, m := range []*member{a, b, c} {
			m.service(t, clusterIPService(ns, "hello"))
		}
		a.export(t, ns, "hello", annotate(sameRegion))
		time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second resolution: a's is the oldest
		b.export(t, ns, "hello", annotate(ownFirst))
		c.export(t, ns, "hello", annotate(`[{"propertySelector": {}}]`))
		a.condition(t, ns, "hello", "Conflict", metav1.ConditionTrue, string(mcs.ReasonClusterSelectorsConflict))
		b.condition(t, ns, "hello", "Conflict", metav1.ConditionTrue, string(mcs.ReasonClusterSelectorsConflict))
		c.condition(t, ns, "hello", "Valid", metav1.ConditionFalse, string(mcs.ReasonInvalidClusterSelector))
		// The oldest export's selection holds: same region. b (r1) selects
		// a and b; c (r2) selects no exporter (c's own export is invalid).
		for m, want := range map[*member]string{b: `[{"clusters":["a","b"]}]`, c: `[{"clusters":[]}]`} {
			m.importIs(t, ns, "hello", func(si *mcsv1b1.ServiceImport) error {
				if got := si.Annotations[mcs.AnnotationClusterSelectorResults]; got != want {
					return fmt.Errorf("%s is %q, want %q", mcs.AnnotationClusterSelectorResults, got, want)
				}
				return nil
			})
		}
	})
}
