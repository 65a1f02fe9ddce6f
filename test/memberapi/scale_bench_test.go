package memberapi_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/test/memberapi"
)

// populate gives a simulated member a namespace and services exported
// from it, each with endpoints endpoints.
func populate(b *testing.B, sim *memberapi.Server, member string, services, endpoints int) {
	b.Helper()
	ctx := b.Context()
	c, err := kubernetes.NewForConfig(sim.Config(member))
	if err != nil {
		b.Fatal(err)
	}
	mc, err := mcsclient.NewForConfig(sim.Config(member))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	port, ready := int32(8080), true
	for i := range services {
		name := fmt.Sprintf("svc-%03d", i)
		if _, err := c.CoreV1().Services("fleet").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: &port}}}
		for e := range endpoints {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 1+i%200, e/250, 1+e%250)}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
		}
		if _, err := c.DiscoveryV1().EndpointSlices("fleet").Create(ctx, es, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, err := mc.MulticlusterV1beta1().ServiceExports("fleet").Create(ctx, &mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkColdStart starts eastwest (informers, write-back) on many
// simulated members, each exporting services exported by every member
// (one ServiceImport per service in each), and reports the time until
// every member is synced and until the write-back has nothing pending,
// and the live heap per member (the simulated members' objects, in the
// same process, included). A first measure for issue 29:
//
//	MEMBERS=10,50,250 go test ./test/memberapi -run '^$' -bench ColdStart -benchtime 1x -timeout 30m
//
// (10 and 50 members without MEMBERS; 250 members export 4 services each.)
func BenchmarkColdStart(b *testing.B) {
	sizes := []struct{ members, services, endpoints int }{{10, 10, 10}, {50, 10, 10}}
	if v := os.Getenv("MEMBERS"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("MEMBERS=%q: %v", v, err)
			}
			services := 10
			if n > 50 {
				services = 4
			}
			sizes = append(sizes, struct{ members, services, endpoints int }{n, services, 10})
		}
	}
	for _, tc := range sizes {
		b.Run(fmt.Sprintf("%dmembers-%dservices", tc.members, tc.services), func(b *testing.B) {
			var names []string
			for i := range tc.members {
				names = append(names, fmt.Sprintf("m%03d", i))
			}
			sim := memberapi.Start(names...)
			b.Cleanup(sim.Close)
			for _, n := range names {
				populate(b, sim, n, tc.services, tc.endpoints)
			}
			dir := kubeconfigs(b, sim, names...)
			for b.Loop() {
				var before runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				start := time.Now()
				app, stop := cptest.Run(b, controlplane.Config{KubeconfigDir: dir, WriteBack: true, Resync: time.Hour})
				waitFor(b, 5*time.Minute, func() bool {
					for _, s := range app.MemberStatuses() {
						if s.State != source.StateSynced {
							return false
						}
					}
					return len(app.MemberStatuses()) == tc.members
				})
				synced := time.Since(start)
				waitFor(b, 10*time.Minute, func() bool {
					wb := app.WriteBack()
					return wb.Passes > 0 && wb.Pending == 0 && len(wb.Retrying) == 0
				})
				written := time.Since(start)
				var after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
				b.ReportMetric(synced.Seconds(), "s-synced")
				b.ReportMetric(written.Seconds(), "s-written")
				b.ReportMetric(heap/float64(tc.members), "MiB-heap/member")
				b.Logf("%d members x %d services x %d endpoints: synced %v, written %v (%d writes), live heap %.0f MiB (%.2f MiB per member)",
					tc.members, tc.services, tc.endpoints, synced.Round(time.Millisecond), written.Round(time.Millisecond), app.WriteBack().Writes, heap, heap/float64(tc.members))
				stop()
			}
		})
	}
}

func waitFor(b *testing.B, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("not within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
