package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/internal/syncbuf"
	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/metrics"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// writerHarness runs a Writer with a short holdoff and lets a test wait
// for each publish.
type writerHarness struct {
	t    *testing.T
	w    *Writer
	c    *cache.Cache
	m    *metrics.Metrics
	gen  uint64
	send func([]event.Event, []source.Problem)
}

func newWriterHarness(t *testing.T) *writerHarness { return newWriterHarnessLog(t, io.Discard) }

func newWriterHarnessLog(t *testing.T, log io.Writer) *writerHarness {
	return newWriterHarnessWith(t, log, WriterOptions{})
}

// newWriterHarnessWith is a harness whose Writer has opts (batching as
// every harness's).
func newWriterHarnessWith(t *testing.T, log io.Writer, opts WriterOptions) *writerHarness {
	c := cache.New(NodeView)
	m := metrics.New()
	opts.Holdoff, opts.MaxDelay = time.Millisecond, 5*time.Millisecond
	w := NewWriter(opts, c, m, slog.New(slog.NewTextHandler(log, nil)))
	w.AddSource("test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	h := &writerHarness{t: t, w: w, c: c, m: m, send: w.Sink("test")}
	return h
}

// publish sends events and waits until the Writer has published them.
func (h *writerHarness) publish(member string, evs ...event.Event) *Snapshot {
	h.t.Helper()
	for i := range evs {
		evs[i].Member = member
	}
	h.send(evs, nil)
	h.gen = h.waitGeneration(h.gen + 1)
	return h.w.Snapshot()
}

// waitGeneration waits on the Writer's publish signal until its
// generation reaches gen, and returns the generation.
func (h *writerHarness) waitGeneration(gen uint64) uint64 {
	h.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		next := h.w.Published()
		if g := h.w.Snapshot().Generation; g >= gen {
			return g
		}
		select {
		case <-next:
		case <-timeout:
			h.t.Fatalf("the Writer did not reach generation %d", gen)
		}
	}
}

func up(o metav1.Object) event.Event { return event.Event{Op: event.OpUpsert, Object: o} }

func exportedService(port int32) []event.Event {
	return []event.Event{
		up(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}),
		up(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: port, Protocol: corev1.ProtocolTCP}}}}),
		up(&mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}),
	}
}

// A resource that fails validation is not published: the version before it
// keeps being served, the failure shows in the snapshot (debug endpoint)
// and the rejected-resources metric, and the next valid version replaces
// it.
func TestWriterKeepsLastGoodVersion(t *testing.T) {
	// While broken is set, every cluster the translation makes fails
	// validation.
	var broken atomic.Bool
	injected := errors.New("injected: fails validation")
	h := newWriterHarnessWith(t, io.Discard, WriterOptions{Translate: func(st *mcs.ServiceState, v translate.View, o translate.ServiceOptions) translate.Result {
		r := translate.ServiceWith(st, v, o)
		if !broken.Load() {
			return r
		}
		var kept []translate.Resource
		for _, res := range r.Resources {
			if res.Type == resourcev3.ClusterType {
				r.Invalid = append(r.Invalid, translate.Invalid{Type: res.Type, Name: res.Name, Err: injected})
				continue
			}
			kept = append(kept, res)
		}
		r.Resources = kept
		return r
	}})
	key := mcs.ServiceKey{Namespace: "ns", Name: "web"}
	name := translate.ClusterName(key, 80)
	view := ViewName("east", translate.RoleClient)
	h.publish("east", exportedService(80)...)
	good := h.c.Resources(view, resourcev3.ClusterType)
	if len(good.Resources) != 1 || !h.c.Has(view, resourcev3.RouteType, translate.RouteName(key, 80)) {
		t.Fatalf("first publish: %+v", good)
	}

	broken.Store(true)
	// The Service changes (a new appProtocol): the new cluster is invalid.
	svc := exportedService(80)[1].Object.(*corev1.Service)
	svc.Spec.Ports[0].AppProtocol = ptr("kubernetes.io/h2c")
	snap := h.publish("east", up(svc))
	after := h.c.Resources(view, resourcev3.ClusterType)
	if len(after.Resources) != 1 || after.Resources[0].Version != good.Resources[0].Version {
		t.Errorf("the last good cluster was not kept: %+v", after.Resources)
	}
	if inv := snap.Invalid[view]; len(inv) != 1 || inv[0].Name != name || !strings.Contains(inv[0].Error(), "injected") {
		t.Errorf("snapshot invalid = %v", snap.Invalid)
	}
	// One per view: east's client and gateway views both hold the cluster.
	if got := gauge(t, h.m, "eastwest_xds_rejected_resources", "Cluster"); got != 2 {
		t.Errorf("eastwest_xds_rejected_resources{type=Cluster} = %v, want 2", got)
	}

	broken.Store(false)
	svc.Spec.Ports[0].AppProtocol = ptr("grpc")
	snap = h.publish("east", up(svc))
	if len(snap.Invalid) != 0 {
		t.Errorf("invalid after a valid version: %v", snap.Invalid)
	}
	// Gateways speak HTTP/2 to a grpc port: their cluster changed.
	gw := ViewName("east", translate.RoleGateway)
	if v := h.c.Resources(gw, resourcev3.ClusterType).Resources[0]; v.Message.(*clusterv3.Cluster).Name != name || len(v.Message.(*clusterv3.Cluster).TypedExtensionProtocolOptions) == 0 {
		t.Errorf("the new valid cluster was not published: %v", v)
	}
	if got := gauge(t, h.m, "eastwest_xds_rejected_resources", "Cluster"); got != 0 {
		t.Errorf("eastwest_xds_rejected_resources{type=Cluster} = %v after recovery", got)
	}
}

// gauge reads one labelled gauge from the registry.
func gauge(t *testing.T, m *metrics.Metrics, name, typ string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == typ {
					return metric.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// When a member leaves, the services only it exported stop being served.
func TestWriterDropsServicesOfALeavingMember(t *testing.T) {
	h := newWriterHarness(t)
	view := ViewName("east", translate.RoleClient)
	h.publish("east", up(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}))
	h.publish("west", exportedService(80)...)
	if !h.c.Has(view, resourcev3.ClusterType, translate.ClusterName(mcs.ServiceKey{Namespace: "ns", Name: "web"}, 80)) {
		t.Fatal("west's service not served to east")
	}
	h.publish("west", event.Event{Op: event.OpLeave})
	if h.c.Has(view, resourcev3.ClusterType, translate.ClusterName(mcs.ServiceKey{Namespace: "ns", Name: "web"}, 80)) {
		t.Error("west left, its service is still served")
	}
}

// A Gateway of eastwest's class gets its own view as soon as it exists,
// with its listener and a route that follows its backend's endpoints
// (a change to the backend rebuilds the Gateway); deleting the Gateway
// removes the view and what it served, and its status is told to the
// write-back each time.
func TestWriterGatewayViews(t *testing.T) {
	h := newWriterHarness(t)
	statuses := make(chan []gatewayapi.Status, 16)
	h.w.OnGatewayAPI(func(_ string, res gatewayapi.Result) { statuses <- res.Statuses })
	h.publish("east", exportedService(80)...)
	class := &gwapiv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "ew"}, Spec: gwapiv1.GatewayClassSpec{ControllerName: gatewayapi.ControllerName}}
	gw := &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gw"}, Spec: gwapiv1.GatewaySpec{GatewayClassName: "ew",
		Listeners: []gwapiv1.Listener{{Name: "http", Port: 8080, Protocol: gwapiv1.HTTPProtocolType}}}}
	group, kind, port := gwapiv1.Group("multicluster.x-k8s.io"), gwapiv1.Kind("ServiceImport"), gwapiv1.PortNumber(80)
	route := &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r"}}
	route.Spec.ParentRefs = []gwapiv1.ParentReference{{Name: "gw"}}
	route.Spec.Rules = []gwapiv1.HTTPRouteRule{{BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: gwapiv1.BackendRef{
		BackendObjectReference: gwapiv1.BackendObjectReference{Group: &group, Kind: &kind, Name: "web", Port: &port}}}}}}
	snap := h.publish("east", up(class), up(gw), up(route))
	view := translate.View{Cluster: "east", Role: translate.RoleGatewayAPI, Gateway: "ns/gw"}.String()
	found := false
	for _, v := range snap.Views {
		found = found || v.String() == view
	}
	if !found {
		t.Fatalf("no view %s in %v", view, snap.Views)
	}
	lis := translate.GatewayAPIListenerName(types.NamespacedName{Namespace: "ns", Name: "gw"}, 8080)
	if !h.c.Has(view, resourcev3.ListenerType, lis) {
		t.Errorf("the Gateway's view lacks its listener %s", lis)
	}
	cla := func() int {
		rs := h.c.Resources(view, resourcev3.EndpointType).Resources
		if len(rs) != 1 {
			return -1
		}
		n := 0
		for _, l := range rs[0].Message.(*endpointv3.ClusterLoadAssignment).Endpoints {
			n += len(l.LbEndpoints)
		}
		return n
	}
	if got := cla(); got != 0 {
		t.Errorf("endpoints before any slice: %d", got)
	}
	ready := true
	h.publish("east", up(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}}}))
	if got := cla(); got != 1 {
		t.Errorf("the Gateway's backend endpoints did not follow the slice: %d", got)
	}
	h.publish("east", event.Event{Op: event.OpDelete, Object: gw})
	if h.c.Has(view, resourcev3.ListenerType, lis) {
		t.Error("the deleted Gateway's listener is still served")
	}
	var last []gatewayapi.Status
	for len(statuses) > 0 {
		last = <-statuses
	}
	for _, st := range last {
		if st.Kind == "Gateway" {
			t.Errorf("a deleted Gateway still has a status: %+v", st)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// Healthy fails once a publish has been owed for longer than the
// liveness timeout, and recovers when the publish is done: a stuck writer
// fails /healthz instead of serving ever older config with a green light.
func TestHealthyFailsWhileAPublishIsOverdue(t *testing.T) {
	w := NewWriter(WriterOptions{LivenessTimeout: time.Minute}, cache.New(NodeView), metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Unix(1000, 0)
	w.now = func() time.Time { return now }
	if err := w.Healthy(); err != nil {
		t.Fatalf("nothing owed: %v", err)
	}
	w.owe()
	now = now.Add(59 * time.Second)
	w.owe() // a later event does not restart the clock
	if err := w.Healthy(); err != nil {
		t.Fatalf("owed for 59s of 1m: %v", err)
	}
	now = now.Add(2 * time.Second)
	if err := w.Healthy(); err == nil || !strings.Contains(err.Error(), "owed for 1m1s") {
		t.Fatalf("owed for 61s: %v", err)
	}
	w.owedSince.Store(0) // published
	if err := w.Healthy(); err != nil {
		t.Errorf("after the publish: %v", err)
	}
}

// Batching: the first event after a quiet holdoff is published at once
// (with an hour's holdoff the test would time out otherwise); with no
// holdoff every batch is published.
func TestWriterPublishesOnTheLeadingEdge(t *testing.T) {
	for name, tc := range map[string]struct {
		holdoff time.Duration
		burst   int
		want    uint64 // publishes for the burst
	}{
		"an hour's holdoff": {holdoff: time.Hour, burst: 0, want: 0},
		"no holdoff":        {holdoff: 0, burst: 5, want: 5},
	} {
		t.Run(name, func(t *testing.T) {
			c := cache.New(NodeView)
			w := NewWriter(WriterOptions{Holdoff: tc.holdoff, MaxDelay: 2 * time.Hour}, c, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			w.AddSource("test")
			// Each reading of the Writer's clock is two hours later: every
			// event comes after a quiet holdoff.
			clock := time.Unix(0, 0)
			w.now = func() time.Time { clock = clock.Add(2 * time.Hour); return clock }
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { w.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			h := &writerHarness{t: t, w: w, c: c, send: w.Sink("test")}
			h.send(nil, nil) // the initial sync
			h.gen = h.waitGeneration(1)
			// Quiet: the next event is published at once.
			h.publish("east", exportedService(80)...)
			for i := range tc.burst {
				name := fmt.Sprint("s", i)
				h.send([]event.Event{
					{Member: "east", Op: event.OpUpsert, Object: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}},
					{Member: "east", Op: event.OpUpsert, Object: &mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}},
				}, nil)
			}
			if tc.want > 0 {
				if g := h.waitGeneration(h.gen + tc.want); g != h.gen+tc.want {
					t.Errorf("a burst of %d with no holdoff made %d publishes", tc.burst, g-h.gen)
				}
			}
		})
	}
}

// Every publish after the first is logged at info: its generation, what
// changed and how many responses went out.
func TestWriterLogsPublishes(t *testing.T) {
	var buf syncbuf.Buffer
	h := newWriterHarnessLog(t, &buf)
	h.publish("east", up(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}))
	h.publish("west", exportedService(80)...)
	out := buf.String()
	if !strings.Contains(out, "level=INFO msg=published generation=2 services=1") || !strings.Contains(out, "changed=ns/web") || !strings.Contains(out, "responses=0") {
		t.Errorf("publish not logged as expected:\n%s", out)
	}
}

// A member whose network property flaps (a member admin's
// ClusterProperty, edited in a loop) made every view be translated again
// at every flap: 73% of a core at 1,500 services at two flaps a second
// (the trust-boundaries issue). After a costly publish the Writer rests
// PublishRest times as long as it took (at most MaxRest): publishing
// takes at most a quarter of its time however fast the inputs change,
// and the last change is still published.
func TestWriterRestsAfterCostlyPublishes(t *testing.T) {
	c := cache.New(NodeView)
	w := NewWriter(WriterOptions{Holdoff: time.Millisecond, MaxDelay: 5 * time.Millisecond, RestAfter: time.Millisecond}, c, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.AddSource("test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	h := &writerHarness{t: t, w: w, c: c, send: w.Sink("test")}
	var evs []event.Event
	for i := range 300 {
		name := fmt.Sprint("s", i)
		evs = append(evs,
			up(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}),
			up(&mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}))
	}
	network := func(v string) event.Event {
		return up(&about.ClusterProperty{ObjectMeta: metav1.ObjectMeta{Name: about.PropertyNetwork}, Spec: about.ClusterPropertySpec{Value: v}})
	}
	h.publish("east", append([]event.Event{up(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}})}, evs...)...)
	h.publish("west", append([]event.Event{up(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}})}, evs...)...)

	// Watch every publish while the network flaps as fast as it can be
	// sent.
	type pub struct {
		gen      uint64
		at       time.Time
		took     time.Duration
		networks string
	}
	var seen []pub
	stop, watching := make(chan struct{}), make(chan struct{})
	record := func(s *Snapshot) {
		var nets []string
		for _, ci := range s.State.Clusters {
			nets = append(nets, ci.Network)
		}
		if len(seen) == 0 || seen[len(seen)-1].gen != s.Generation {
			seen = append(seen, pub{s.Generation, s.PublishedAt, s.Took, strings.Join(nets, ",")})
		}
	}
	go func() {
		defer close(watching)
		for {
			next := w.Published()
			record(w.Snapshot())
			select {
			case <-next:
			case <-stop:
				return
			}
		}
	}()
	// Flap until four publishes came of it (a second here; longer under
	// the race detector, where each costs several times more).
	flaps, from := 0, w.Snapshot().Generation
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && w.Snapshot().Generation < from+4; flaps++ {
		h.send([]event.Event{{Member: "east", Op: event.OpUpsert, Object: network(fmt.Sprint("n", flaps%2)).Object}}, nil)
		time.Sleep(time.Millisecond)
	}
	last := fmt.Sprint("n", (flaps-1)%2)
	// The last flap is published, after a rest at most.
	deadline := time.After(30 * time.Second)
	for {
		next := w.Published()
		if s := w.Snapshot(); len(s.State.Clusters) > 0 && s.State.Clusters[0].Network == last {
			break
		}
		select {
		case <-next:
		case <-deadline:
			t.Fatalf("after %d flaps east's network is not its last, %s, 30 s on", flaps, last)
		}
	}
	close(stop)
	<-watching
	record(w.Snapshot())
	rested := 0
	for i := 1; i < len(seen); i++ {
		prev, cur := seen[i-1], seen[i]
		if cur.gen != prev.gen+1 || prev.took < time.Millisecond {
			continue
		}
		rested++
		if gap, want := cur.at.Sub(prev.at), min(prev.took*PublishRest, MaxRest); gap < want {
			t.Errorf("publish %d came %v after one that took %v; want a rest of %v", cur.gen, gap, prev.took, want)
		}
	}
	if rested < 3 {
		t.Errorf("%d flaps made only %d costly publishes in a row to check (%v)", flaps, rested, seen)
	}
	var busy time.Duration
	for _, p := range seen {
		busy += p.took
	}
	t.Logf("%d flaps, %d publishes (%v publishing in all), %d checked", flaps, len(seen), busy, rested)
}
