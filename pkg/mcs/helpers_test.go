package mcs

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/event"
)

// t0 is the creation time of the oldest export in the rule tests.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// world drives a Store the way sources do and reads the merged state.
type world struct {
	t *testing.T
	s *Store
}

func newWorld(t *testing.T) *world {
	t.Helper()
	return &world{t: t, s: NewStore(Options{})}
}

func (w *world) upsert(member string, objs ...metav1.Object) *world {
	w.t.Helper()
	for _, o := range objs {
		if err := w.s.Apply(event.Event{Member: member, Op: event.OpUpsert, Object: o}); err != nil {
			w.t.Fatalf("apply %T: %v", o, err)
		}
	}
	return w
}

func (w *world) remove(member string, objs ...metav1.Object) *world {
	w.t.Helper()
	for _, o := range objs {
		if err := w.s.Apply(event.Event{Member: member, Op: event.OpDelete, Object: o}); err != nil {
			w.t.Fatalf("delete %T: %v", o, err)
		}
	}
	return w
}

func (w *world) leave(member string) *world {
	w.t.Helper()
	if err := w.s.Apply(event.Event{Member: member, Op: event.OpLeave}); err != nil {
		w.t.Fatal(err)
	}
	return w
}

func (w *world) flush() Changes { return w.s.Flush() }

// svcState flushes and returns the state of ns/name.
func (w *world) svcState(ns, name string) *ServiceState {
	w.flush()
	return w.s.Service(ServiceKey{ns, name})
}

// exported sets up a member that holds the namespace, a Service and its
// export created at t0+age.
func (w *world) exported(member string, svc *corev1.Service, age time.Duration) *world {
	return w.upsert(member, namespace(svc.Namespace), svc, export(svc.Namespace, svc.Name, age))
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func export(ns, name string, age time.Duration) *mcsv1b1.ServiceExport {
	return &mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name, Generation: 1, CreationTimestamp: metav1.NewTime(t0.Add(age)),
	}}
}

func service(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"svc-label": "x"}},
		Spec:       corev1.ServiceSpec{Ports: ports},
	}
}

func port(name string, number int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: number, Protocol: corev1.ProtocolTCP}
}

// slice builds an EndpointSlice of svc with n ready endpoints listening on
// target port 8000+i for the i-th port name.
func slice(ns, name, svc string, n int, portNames ...string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, p := range portNames {
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptr.To(p), Port: ptr.To(int32(8000 + i)), Protocol: ptr.To(corev1.ProtocolTCP)})
	}
	for i := range n {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", len(name)%250, i/250, i%250+1)}})
	}
	return es
}

func cond(t *testing.T, st *ServiceState, c ClusterID, typ mcsv1b1.ServiceExportConditionType) metav1.Condition {
	t.Helper()
	if st == nil {
		t.Fatalf("no state")
	}
	es := st.Export(c)
	if es == nil {
		t.Fatalf("no export status for cluster %s", c)
	}
	cd := es.Condition(typ)
	if cd == nil {
		t.Fatalf("cluster %s: no %s condition in %+v", c, typ, es.Conditions)
	}
	return *cd
}

func wantCond(t *testing.T, st *ServiceState, c ClusterID, typ mcsv1b1.ServiceExportConditionType, status metav1.ConditionStatus, reason string) {
	t.Helper()
	got := cond(t, st, c, typ)
	if got.Status != status || got.Reason != reason {
		t.Errorf("cluster %s %s = %s/%s (%s), want %s/%s", c, typ, got.Status, got.Reason, got.Message, status, reason)
	}
}
