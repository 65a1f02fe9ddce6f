package writeback

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// A cached MCS EndpointSlice keeps a digest of its endpoints instead of
// them: equal endpoints, equal digests; a change, another; digesting
// twice (a resync) keeps the first.
func TestDigestSlice(t *testing.T) {
	slice := func(ips ...string) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{}
		s.Annotations = map[string]string{"keep": "me"}
		for _, ip := range ips {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}})
		}
		return s
	}
	digest := func(s *discoveryv1.EndpointSlice) string {
		t.Helper()
		o, err := digestSlice(s)
		if err != nil {
			t.Fatal(err)
		}
		d := o.(*discoveryv1.EndpointSlice)
		if d.Endpoints != nil || d.Annotations["keep"] != "me" {
			t.Fatalf("digested slice %+v", d)
		}
		return d.Annotations[digestKey]
	}
	a, a2, b := digest(slice("10.0.0.1", "10.0.0.2")), digest(slice("10.0.0.1", "10.0.0.2")), digest(slice("10.0.0.1"))
	if a == "" || a != a2 || a == b {
		t.Fatalf("digests %q %q %q", a, a2, b)
	}
	want, err := endpointsDigest(slice("10.0.0.1", "10.0.0.2").Endpoints)
	if err != nil || want != a {
		t.Fatalf("endpointsDigest %q, digestSlice %q (%v)", want, a, err)
	}
	twice := slice("10.0.0.9")
	first := digest(twice)
	if again := digest(twice); again != first {
		t.Fatalf("digested again: %q, was %q", again, first)
	}
}

// The digest does not depend on map order: endpoints whose topology maps
// hold the same keys (built in different orders) digest alike, every
// time, and a changed value changes the digest.
func TestDigestDeterministic(t *testing.T) {
	keys := []string{"zone", "region", "host", "rack", "row", "pod", "node", "dc"}
	build := func(order []string, last string) []discoveryv1.Endpoint {
		topology := map[string]string{}
		for _, k := range order {
			topology[k] = k + "-value"
		}
		topology["zone"] = last
		return []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, DeprecatedTopology: topology}}
	}
	reversed := slices.Clone(keys)
	slices.Reverse(reversed)
	first, err := endpointsDigest(build(keys, "a"))
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if d, _ := endpointsDigest(build(reversed, "a")); d != first {
			t.Fatalf("digest %q, then %q, for the same endpoints", first, d)
		}
	}
	if d, _ := endpointsDigest(build(keys, "b")); d == first {
		t.Fatal("a changed topology value kept the digest")
	}
}

// Errors a stale cache explains become conflicts (retried from the
// apiserver) only when the read came from the cache.
func TestStaleCache(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	for _, tc := range []struct {
		name      string
		err       error
		fromCache bool
		conflict  bool
	}{
		{"already exists, from the cache", apierrors.NewAlreadyExists(gr, "x"), true, true},
		{"not found, from the cache", apierrors.NewNotFound(gr, "x"), true, true},
		{"already exists, from the apiserver", apierrors.NewAlreadyExists(gr, "x"), false, false},
		{"forbidden, from the cache", apierrors.NewForbidden(gr, "x", errors.New("no")), true, false},
		{"no error", nil, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := apierrors.IsConflict(staleCache(tc.err, tc.fromCache)); got != tc.conflict {
				t.Fatalf("conflict %v, want %v", got, tc.conflict)
			}
		})
	}
}

// The caches of ServiceImports and ServiceExports hold typed objects,
// converted once as they arrive and without managed fields; read gives a
// copy (callers change it). An object that does not convert does not
// stop the informer: it is kept as it came, and read reports it for that
// service alone.
func TestTypedCache(t *testing.T) {
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	add := func(obj map[string]any) {
		t.Helper()
		o, err := asTyped[mcsv1b1.ServiceImport](&unstructured.Unstructured{Object: obj})
		if err != nil {
			t.Fatalf("asTyped: %v", err)
		}
		again, err := asTyped[mcsv1b1.ServiceImport](o) // a resync
		if err != nil || again != o {
			t.Fatalf("asTyped of a converted object: %v, %v", again, err)
		}
		if err := inf.GetIndexer().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	meta := func(name string) map[string]any {
		return map[string]any{"name": name, "namespace": "ns", "managedFields": []any{map[string]any{"manager": "x"}}}
	}
	add(map[string]any{"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport", "metadata": meta("good"),
		"spec": map[string]any{"type": "ClusterSetIP", "ips": []any{"10.0.0.1"}, "ports": []any{map[string]any{"port": int64(80)}}}})
	add(map[string]any{"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport", "metadata": meta("bad"),
		"spec": map[string]any{"ports": "not a list"}})

	for _, tc := range []struct {
		name, wantErr string
		wantIPs       []string
	}{
		{name: "good", wantIPs: []string{"10.0.0.1"}},
		{name: "bad", wantErr: "ServiceImport ns/bad"},
		{name: "absent", wantErr: "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			si, err := read[mcsv1b1.ServiceImport](context.Background(), nil, inf, true, "ns", tc.name)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("read = %v, %v; want an error with %q", si, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(si.Spec.IPs, tc.wantIPs) || si.Spec.Ports[0].Port != 80 || si.ManagedFields != nil {
				t.Fatalf("read = %+v", si)
			}
			si.Spec.IPs[0] = "changed"
			again, _ := read[mcsv1b1.ServiceImport](context.Background(), nil, inf, true, "ns", tc.name)
			if again.Spec.IPs[0] != tc.wantIPs[0] {
				t.Fatal("read gave the cached object, not a copy")
			}
		})
	}
}
