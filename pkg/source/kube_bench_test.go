package source

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// BenchmarkEndpointMemory measures what one endpoint costs a member
// cluster's source: EndpointSlices decoded from JSON as an informer gets
// them (100 endpoints each, with the managed fields, target references,
// node names and zones a real cluster sets), trimmed by the informer
// transform and kept in an informer store, plus the Store's own view of
// them. It reports heap bytes per endpoint (target: <= 200).
func BenchmarkEndpointMemory(b *testing.B) {
	const slices, perSlice = 200, 100
	raw := make([][]byte, slices)
	for i := range raw {
		raw[i] = realisticSlice(i, perSlice)
	}
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		store := cache.NewStore(cache.MetaNamespaceKeyFunc)
		s := mcs.NewStore(mcs.Options{})
		for _, r := range raw {
			var es discoveryv1.EndpointSlice
			if err := json.Unmarshal(r, &es); err != nil {
				b.Fatal(err)
			}
			o, _ := trim(&es)
			_ = store.Add(o)
			_ = s.Apply(event.Event{Member: "m", Op: event.OpUpsert, Object: o.(*discoveryv1.EndpointSlice)})
		}
		s.Flush()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(slices*perSlice), "B/endpoint")
		runtime.KeepAlive(store)
		runtime.KeepAlive(s)
	}
}

func realisticSlice(i, n int) []byte {
	es := discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("svc-%d-abcde", i), Namespace: "shop", UID: types.UID(fmt.Sprintf("uid-%d", i)), ResourceVersion: "123456",
			Labels: map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("svc-%d", i), discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update", APIVersion: "discovery.k8s.io/v1",
				FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:addressType":{},"f:endpoints":{},"f:metadata":{"f:labels":{".":{},"f:endpointslice.kubernetes.io/managed-by":{},"f:kubernetes.io/service-name":{}}},"f:ports":{}}`)}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for e := range n {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", i/250, i%250, e)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(fmt.Sprintf("node-%d", e%20)),
			Zone:       ptr.To(fmt.Sprintf("zone-%d", e%3)),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: fmt.Sprintf("svc-%d-pod-%d", i, e), UID: types.UID(fmt.Sprintf("pod-uid-%d-%d", i, e))},
		})
	}
	b, _ := json.Marshal(es)
	return b
}
