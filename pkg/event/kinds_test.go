package event

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/about"
)

// Every kind's Go type maps back to its group and kind, no version is
// listed twice, and each object goes to the stores that keep it.
func TestKinds(t *testing.T) {
	seen := map[schema.GroupVersionKind]bool{}
	for _, k := range Kinds {
		if seen[k.GVK] {
			t.Errorf("%v listed twice", k.GVK)
		}
		seen[k.GVK] = true
		back, ok := KindOf(k.New())
		if !ok || back.GVK.GroupKind() != k.GVK.GroupKind() {
			t.Errorf("%v: its Go type maps to %v", k.GVK, back.GVK)
		}
		if got, ok := KindFor(k.GVK); !ok || got.GVK != k.GVK {
			t.Errorf("KindFor(%v) = %v", k.GVK, got.GVK)
		}
	}
	for _, tc := range []struct {
		obj  metav1.Object
		want Stores
	}{
		{&about.ClusterProperty{}, MCS},
		{&corev1.Namespace{}, MCS | Gateway},
		{&corev1.Service{}, MCS | Gateway},
		{&mcsv1b1.ServiceExport{}, MCS},
		{&mcsv1a1.ServiceExport{}, MCS},
		{&discoveryv1.EndpointSlice{}, MCS},
		{&gwapiv1.GatewayClass{}, Gateway},
		{&gwapiv1.Gateway{}, Gateway},
		{&gwapiv1.HTTPRoute{}, Gateway},
		{&gwapiv1.GRPCRoute{}, Gateway},
		{&gwapiv1.ReferenceGrant{}, Gateway},
		{&corev1.Secret{}, Gateway},
		{&corev1.ConfigMap{}, 0},
	} {
		if got := StoresOf(tc.obj); got != tc.want {
			t.Errorf("%T goes to stores %b, want %b", tc.obj, got, tc.want)
		}
	}
	if Rank("ClusterProperty") >= Rank("Namespace") || Rank("Namespace") >= Rank("Service") || Rank("Service") >= Rank("EndpointSlice") || Rank("ConfigMap") != len(Kinds) {
		t.Error("ranks do not order properties, namespaces, services, then the rest")
	}
}
