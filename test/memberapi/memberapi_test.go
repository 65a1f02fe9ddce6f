package memberapi_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/eastwest-dev/eastwest/internal/kubeclient"
	"github.com/eastwest-dev/eastwest/test/kube"
	"github.com/eastwest-dev/eastwest/test/memberapi"
)

var exportsGVR = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1beta1", Resource: "serviceexports"}

// describe is what of an event both servers must agree on: its type, the
// object's kind and name, and the fields eastwest reads or the server
// sets that a client depends on (never uids, times or versions).
func describe(ev watch.Event) string {
	if ev.Type == watch.Error {
		st, ok := ev.Object.(*metav1.Status)
		if !ok {
			if u, isU := ev.Object.(*unstructured.Unstructured); isU {
				code, _, _ := unstructured.NestedInt64(u.Object, "code")
				reason, _, _ := unstructured.NestedString(u.Object, "reason")
				return fmt.Sprintf("ERROR %d %s", code, reason)
			}
			return fmt.Sprintf("ERROR %T", ev.Object)
		}
		return fmt.Sprintf("ERROR %d %s", st.Code, st.Reason)
	}
	switch o := ev.Object.(type) {
	case *corev1.Service:
		ips := "no cluster IP"
		if o.Spec.ClusterIP != "" && len(o.Spec.ClusterIPs) == 1 {
			ips = "cluster IP"
		}
		var ports []string
		for _, p := range o.Spec.Ports {
			ports = append(ports, fmt.Sprintf("%s/%d/%s->%s", p.Name, p.Port, p.Protocol, p.TargetPort.String()))
		}
		return fmt.Sprintf("%s Service %s labels=%v type=%s %s ports=%v families=%v", ev.Type, o.Name, o.Labels, o.Spec.Type, ips, ports, o.Spec.IPFamilies)
	case *corev1.Namespace:
		return fmt.Sprintf("%s Namespace %s phase=%s deleting=%v", ev.Type, o.Name, o.Status.Phase, o.DeletionTimestamp != nil)
	case *unstructured.Unstructured:
		conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
		var types []string
		for _, c := range conds {
			cm, _ := c.(map[string]any)
			types = append(types, fmt.Sprint(cm["type"], "=", cm["status"]))
		}
		return fmt.Sprintf("%s %s %s generation=%d conditions=%v", ev.Type, o.GetKind(), o.GetName(), o.GetGeneration(), types)
	}
	return fmt.Sprintf("%s %T", ev.Type, ev.Object)
}

// take reads n events from a watch (bookmarks skipped).
func take(t *testing.T, w watch.Interface, n int) []string {
	t.Helper()
	var out []string
	timeout := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch ended after %v", out)
			}
			if ev.Type != watch.Bookmark {
				out = append(out, describe(ev))
			}
		case <-timeout:
			t.Fatalf("%d of %d events within 20s: %v", len(out), n, out)
		}
	}
	return out
}

// sequence runs the same requests against a server and returns what its
// watches and answers showed.
func sequence(t *testing.T, cfg *rest.Config) []string {
	ctx := context.Background()
	core, err := kubeclient.Core(cfg) // protobuf bodies, as eastwest sends them
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	ns, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "seq"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svcs := core.CoreV1().Services("seq")
	w, err := svcs.Watch(ctx, metav1.ListOptions{ResourceVersion: ns.ResourceVersion, AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	labelled, err := svcs.Watch(ctx, metav1.ListOptions{ResourceVersion: ns.ResourceVersion, LabelSelector: "tier=web"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := svcs.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"tier": "web"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Labels = map[string]string{"tier": "db"}
	a.Spec.ClusterIP, a.Spec.ClusterIPs = "", nil // an update that leaves the IPs out keeps them
	b, err := svcs.Update(ctx, a, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stale := a.DeepCopy()
	stale.Labels = map[string]string{"tier": "stale"}
	_, err = svcs.Update(ctx, stale, metav1.UpdateOptions{})
	log = append(log, "stale update: "+reason(err))
	_, err = svcs.Create(ctx, b, metav1.CreateOptions{})
	log = append(log, "create with a resource version: "+reason(err))
	_, err = svcs.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 81}}}}, metav1.CreateOptions{})
	log = append(log, "create again: "+reason(err))
	_, err = core.CoreV1().Services("nowhere").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	log = append(log, "create in a missing namespace: "+reason(err))
	_, err = svcs.Get(ctx, "missing", metav1.GetOptions{})
	log = append(log, "get a missing one: "+reason(err))

	exports := dyn.Resource(exportsGVR).Namespace("seq")
	se := &unstructured.Unstructured{Object: map[string]any{"apiVersion": exportsGVR.GroupVersion().String(), "kind": "ServiceExport", "metadata": map[string]any{"name": "a"}}}
	se, err = exports.Create(ctx, se, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedSlice(se.Object, []any{map[string]any{"type": "Valid", "status": "True", "reason": "Valid", "message": "ok", "lastTransitionTime": "2026-12-06T00:00:00Z"}}, "status", "conditions")
	se, err = exports.UpdateStatus(ctx, se, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log = append(log, fmt.Sprintf("export after a status update: generation=%d", se.GetGeneration()))
	if err := svcs.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	log = append(log, take(t, w, 3)...)
	log = append(log, take(t, labelled, 2)...)
	w.Stop()
	labelled.Stop()

	// A watch resumed from the update sees only what followed.
	resumed, err := svcs.Watch(ctx, metav1.ListOptions{ResourceVersion: b.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	log = append(log, take(t, resumed, 1)...)
	resumed.Stop()
	// A version from before the first change, while the server holds
	// every change since: the changes replayed.
	old, err := svcs.Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
	if err != nil {
		log = append(log, "watch from version 1: "+reason(err))
	} else {
		log = append(log, take(t, old, 1)...)
		old.Stop()
	}
	// The namespace deleted: no controller, so it stays Terminating.
	nsw, err := core.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{ResourceVersion: b.ResourceVersion, FieldSelector: "metadata.name=seq"})
	if err != nil {
		t.Fatal(err)
	}
	if err := core.CoreV1().Namespaces().Delete(ctx, "seq", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	log = append(log, take(t, nsw, 1)...)
	nsw.Stop()
	_, err = svcs.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "late"}}, metav1.CreateOptions{})
	log = append(log, "create in a terminating namespace: "+reason(err))
	return log
}

// reason is an answer's error as both servers must agree on it.
func reason(err error) string {
	if err == nil {
		return "ok"
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return fmt.Sprintf("%d %s", status.Status().Code, status.Status().Reason)
	}
	return "not an API status: " + err.Error()
}

// informerSees runs a client-go informer (a watch list, as client-go does
// by default) on Services and returns what it synced.
func informerSees(t *testing.T, cfg *rest.Config, ns string) []string {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Services().Informer()
	stop := make(chan struct{})
	defer func() { close(stop); f.Shutdown() }()
	f.Start(stop)
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		t.Fatal("informer not synced")
	}
	var names []string
	for _, o := range inf.GetStore().List() {
		names = append(names, o.(*corev1.Service).Name)
	}
	slices.Sort(names)
	return names
}

// The simulator and a real kube-apiserver (the harness's) give the same
// events and answers for one sequence: creates, updates (a stale one
// refused, a Service's cluster IPs kept), a status update, deletes,
// errors (conflict, invalid, already exists, not found, forbidden), a
// label-selected watch seeing objects come and go, a watch resumed from
// a version, one from before every change (replayed by both), a deleted
// namespace left Terminating; and a client-go informer (a watch list)
// syncs the same objects from both. (410 Gone cannot be had from a real
// apiserver on demand, its watch cache serving old versions:
// TestCompactionMakesInformersRelist checks the simulator's.)
func TestSameEventsAsARealAPIServer(t *testing.T) {
	real := kube.Start(t, "real")[0]
	sim := memberapi.Start("sim")
	t.Cleanup(sim.Close)
	got := map[string][]string{"real": sequence(t, real.Config), "sim": sequence(t, sim.Config("sim"))}
	if strings.Join(got["real"], "\n") != strings.Join(got["sim"], "\n") {
		t.Errorf("the simulator differs from a real apiserver:\nreal:\n  %s\nsim:\n  %s", strings.Join(got["real"], "\n  "), strings.Join(got["sim"], "\n  "))
	}
	for name, cfg := range map[string]*rest.Config{"real": real.Config, "sim": sim.Config("sim")} {
		ctx := context.Background()
		core, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "inf"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"s1", "s2", "s3"} {
			if _, err := core.CoreV1().Services("inf").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: n}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if seen := informerSees(t, cfg, "inf"); !slices.Equal(seen, []string{"s1", "s2", "s3"}) {
			t.Errorf("%s: the informer synced %v", name, seen)
		}
	}
}

// A member compacted while its informer is away: the informer's watch
// gets 410 Gone, relists, and ends with the member's objects; in JSON and
// in protobuf (eastwest's core clients), whose watch frames differ.
func TestCompactionMakesInformersRelist(t *testing.T) {
	for _, encoding := range []string{"json", "protobuf"} {
		t.Run(encoding, func(t *testing.T) {
			sim := memberapi.Start("m")
			t.Cleanup(sim.Close)
			cfg := sim.Config("m")
			var client kubernetes.Interface
			client, err := kubernetes.NewForConfig(cfg)
			if encoding == "protobuf" {
				client, err = kubeclient.Core(cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			list, err := client.CoreV1().Services("ns").List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.CoreV1().Services("ns").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			sim.Member("m").Compact()
			w, err := client.CoreV1().Services("ns").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			ev := <-w.ResultChan()
			if st, ok := ev.Object.(*metav1.Status); ev.Type != watch.Error || !ok || st.Code != 410 {
				t.Fatalf("watch from before the compaction: %v %v, want ERROR 410", ev.Type, ev.Object)
			}
			if seen := informerSees(t, cfg, "ns"); !slices.Equal(seen, []string{"s"}) {
				t.Errorf("the informer synced %v", seen)
			}
			if r := sim.Member("m").Requests(); r["watch"] < 2 || r["create"] != 2 {
				t.Errorf("requests %v", r)
			}
		})
	}
}
