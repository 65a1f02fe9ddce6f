package multicluster

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/kubeclient"
	"github.com/eastwest-dev/eastwest/test/kube"
	"github.com/eastwest-dev/eastwest/test/memberapi"
)

// populateOver creates member i's (of n) scale objects through its API,
// as any client would (the same requests for a real apiserver and a
// simulated one).
func populateOver(ctx context.Context, cfg *rest.Config, i, n int) error {
	core, err := kubeclient.Core(cfg)
	if err != nil {
		return err
	}
	mc, err := mcsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, o := range scaleObjects(i, n) {
		switch obj := o.obj.(type) {
		case *corev1.Namespace:
			_, err = core.CoreV1().Namespaces().Create(ctx, obj, metav1.CreateOptions{})
		case *corev1.Service:
			_, err = core.CoreV1().Services(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
		case *discoveryv1.EndpointSlice:
			_, err = core.DiscoveryV1().EndpointSlices(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
		case *mcsv1b1.ServiceExport:
			_, err = mc.MulticlusterV1beta1().ServiceExports(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
		default:
			err = fmt.Errorf("no client for %T", o.obj)
		}
		if err != nil {
			return fmt.Errorf("member %d: %s: %w", i, o.resource, err)
		}
	}
	return nil
}

// BenchmarkRealAndSimulatedMembers runs one ClusterSet of the scale
// benchmark's shape, 20 members by default (EASTWEST_SCALE_REAL_MEMBERS,
// a multiple of 5), on real apiservers (the harness's kube-apiserver and
// etcd per member: the most this machine holds with room to measure),
// then on simulated ones (test/memberapi), with one `xds serve` writing
// back, and reports the same per-member figures from both, to say how far
// the simulator's figures at 250 and 500 members carry:
//
//	go test ./test/multicluster -run '^$' -bench RealAndSimulated -benchtime 1x -timeout 30m
//
// Every object is created and every change made through the member's API
// with client-go in both (the same requests). Reported: the time to
// ready and to the write-back done, the replica's RSS and live heap per
// member, and under 20 endpoint changes a second for 30 s, its CPU and
// the write-back's writes per change.
func BenchmarkRealAndSimulatedMembers(b *testing.B) {
	n := scaleSetting("REAL_MEMBERS", 20)
	if n < 2*scaleGroup || n%scaleGroup != 0 {
		b.Fatalf("EASTWEST_SCALE_REAL_MEMBERS=%d: a multiple of %d, at least %d", n, scaleGroup, 2*scaleGroup)
	}
	var names []string
	for i := range n {
		names = append(names, scaleMember(i))
	}
	bin := buildXDS(b)
	for _, kind := range []string{"real", "simulated"} {
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				var cfgs []*rest.Config
				var dir string
				switch kind {
				case "real":
					cs := kube.Start(b, names...)
					for _, c := range cs {
						cfgs = append(cfgs, c.Config)
					}
					dir = kubeconfigDir(b, cs...)
				default:
					sim := memberapi.Start(names...)
					b.Cleanup(sim.Close)
					for _, name := range names {
						cfgs = append(cfgs, sim.Config(name))
					}
					dir = b.TempDir()
					if err := sim.WriteKubeconfigs(dir, names...); err != nil {
						b.Fatal(err)
					}
				}
				compareMembers(b, bin, kind, dir, cfgs)
			}
		})
	}
	if os.Getenv("EASTWEST_SCALE_REAL_MEMBERS") == "" {
		b.Logf("%d members: set EASTWEST_SCALE_REAL_MEMBERS for another count", n)
	}
}

func compareMembers(b *testing.B, bin, kind, dir string, cfgs []*rest.Config) {
	ctx := b.Context()
	n := len(cfgs)
	for i, cfg := range cfgs {
		if err := populateOver(ctx, cfg, i, n); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	srv := launchServe(b, bin, freeAddr(b), freeAddr(b), []string{"--kubeconfig-dir", dir})
	srv.waitReady(b, 10*time.Minute)
	ready := time.Since(start)
	waitUntil(b, 15*time.Minute, "the write-back done", func() bool {
		m := srv.series()
		return m != nil && sum(m, "eastwest_writeback_pending_services") == 0 && sum(m, "eastwest_writeback_writes_total") > 0
	})
	written := time.Since(start)
	writesCold := sum(srv.series(), "eastwest_writeback_writes_total")
	rss, heap := float64(srv.rss(b)), srv.liveHeap()

	// 20 changes a second for 30 s, each an EndpointSlice update through
	// the member's API.
	clients := make([]kubernetes.Interface, n)
	for i, cfg := range cfgs {
		core, err := kubeclient.Core(cfg)
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = core
	}
	const rate, seconds = 20, 30
	cpu0, writes0 := srv.cpu(b), sum(srv.series(), "eastwest_writeback_writes_total")
	churnStart := time.Now()
	changes := 0
	for id := 1; id <= rate*seconds; id++ {
		time.Sleep(time.Until(churnStart.Add(time.Duration(id-1) * time.Second / rate)))
		i := id % n
		j := (id / n) % scaleServices
		k := (id / (n * scaleServices)) % scaleEndpoints
		ns := scaleNS(i / scaleGroup)
		slices := clients[i].DiscoveryV1().EndpointSlices(ns)
		es, err := slices.Get(ctx, scaleService(j)+"-1", metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		es.Endpoints[k].Addresses = []string{markerAddress(id)}
		if _, err := slices.Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		changes++
	}
	waitUntil(b, 5*time.Minute, "the write-back caught up", func() bool {
		return sum(srv.series(), "eastwest_writeback_pending_services") == 0
	})
	cpu := srv.cpu(b) - cpu0
	writes := sum(srv.series(), "eastwest_writeback_writes_total") - writes0
	b.Logf("%s, %d members: ready %v, write-back done %v (%.0f writes); RSS %.1f MiB, live heap %.1f MiB per member; churn: %.2f ms CPU and %.2f writes per change",
		kind, n, ready.Round(time.Millisecond), written.Round(time.Millisecond), writesCold,
		rss/(1<<20)/float64(n), heap/(1<<20)/float64(n), float64(cpu.Microseconds())/1000/float64(changes), writes/float64(changes))
	b.ReportMetric(rss/(1<<20)/float64(n), "rss-MiB/member")
	b.ReportMetric(heap/(1<<20)/float64(n), "heap-MiB/member")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(changes), "cpu-ms/change")
	b.ReportMetric(written.Seconds(), "s-written")
}
