package multicluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	discoveryclient "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/kubeclient"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// The fan-out setup: one real apiserver holding fanoutServices exported
// services of fanoutEndpoints endpoints each, served by a real `xds serve`
// process with default flags to fanoutStreams ADS streams (in this
// process) subscribed, as gateways are, to every service's endpoints.
const (
	fanoutServices  = 1000
	fanoutEndpoints = 100
	fanoutBurst     = 100
	fanoutNamespace = "fanout"
)

// fanoutStreams is the number of streams; EASTWEST_FANOUT_STREAMS changes
// it (to see what the streams add to the latency).
var fanoutStreams = func() int {
	if n, err := strconv.Atoi(os.Getenv("EASTWEST_FANOUT_STREAMS")); err == nil && n > 0 {
		return n
	}
	return 100
}()

// fanoutInterval, when EASTWEST_FANOUT_INTERVAL is a duration, paces the
// changes: change i is written no earlier than i intervals after the
// first (an open-loop load, as independent changes arrive), instead of
// right after the previous one reached every stream. Back to back, the
// default, the benchmark keeps this machine's two cores saturated (the
// member's apiserver, etcd, eastwest and the 100 streams), and
// the latency is mostly waiting for a core.
var fanoutInterval = func() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("EASTWEST_FANOUT_INTERVAL"))
	return max(d, 0)
}()

// BenchmarkFanout measures, per protocol, what one EndpointSlice update
// costs when 100 gateways follow 1,000 x 100 endpoints: the latency from
// the apiserver write to each stream (p50, p99 over streams x changes),
// the server's CPU per change, its RSS once every stream is synced, and a
// burst of 100 updates to different services until all 100 streams have
// all of them. Run with -benchtime 100x.
func BenchmarkFanout(b *testing.B) {
	cs := kube.Start(b, "a")
	m := &member{Cluster: cs[0], mcs: mustMCS(b, cs[0])}
	// The member's EndpointSlices are written as the EndpointSlice
	// controller writes them: in protobuf (JSON would cost its apiserver,
	// which shares these cores, several times as much).
	core, err := kubeclient.Core(m.Config)
	if err != nil {
		b.Fatal(err)
	}
	es := core.DiscoveryV1().EndpointSlices(fanoutNamespace)
	populate(b, m, es)
	bin := buildXDS(b)
	dir := kubeconfigDir(b, cs...)
	var names []string
	for i := range fanoutServices {
		names = append(names, translate.ClusterName(mcs.ServiceKey{Namespace: fanoutNamespace, Name: fanoutName(i)}, 80))
	}
	for _, protocol := range []string{"sotw", "delta"} {
		b.Run(protocol, func(b *testing.B) {
			srv := startServe(b, bin, dir)
			start := time.Now()
			st := startStreams(b, srv.xds, names, protocol == "delta")
			b.Logf("%d streams synced in %v", fanoutStreams, time.Since(start).Round(time.Millisecond))
			// Measured in the steady state: once the write-back has
			// written every service's MCS objects (a fresh ClusterSet's
			// first pass writes six objects per service).
			start = time.Now()
			srv.writebackDone(b)
			b.Logf("write-back done in %v", time.Since(start).Round(time.Millisecond))
			rss := srv.rss(b)
			// What the server spends doing nothing (probes, timers): the
			// CPU per change is measured beside it.
			idle0 := srv.cpu(b)
			srv.profile(b, protocol+"-idle", 3)()
			idle := srv.cpu(b) - idle0
			floor := watchFanout(b, es)
			profiles := srv.profile(b, protocol, 8)
			// The benchmark's own scrape is not the loop's CPU.
			before := srv.metrics(b)
			cpu0, member0, loopStart := srv.cpu(b), memberCPU(b, m), time.Now()
			// lat: from the write to each stream; watched: to the
			// benchmark's own watch; added: each stream after that watch
			// (what eastwest adds to the apiserver's delivery; negative
			// when a stream had it first).
			var lat, watched, added []time.Duration
			changes := 0
			for i := 0; b.Loop(); i++ {
				if fanoutInterval > 0 {
					time.Sleep(time.Until(loopStart.Add(time.Duration(i) * fanoutInterval)))
				}
				svc, port := i%fanoutServices, nextMarker()
				cur := getFanoutSlice(b, es, svc)
				arm(b, st, map[string]uint32{names[svc]: uint32(port)})
				t0 := time.Now()
				updateFanoutSlice(b, es, cur, port)
				arrivals := await(b, st, "change "+strconv.Itoa(i))
				seen := floor.at(b, port)
				for _, at := range arrivals {
					lat = append(lat, at.Sub(t0))
					added = append(added, at.Sub(seen))
				}
				watched = append(watched, seen.Sub(t0))
				changes++
			}
			b.StopTimer()
			cpu, memberSpent, loop := srv.cpu(b)-cpu0, memberCPU(b, m)-member0, time.Since(loopStart)
			after := srv.metrics(b)
			b.Logf("server CPU: %v over %d changes in %v (%v garbage collections, %v write-back writes); idle %v per second", cpu, changes, loop.Round(time.Millisecond),
				after["go_gc_duration_seconds_count"]-before["go_gc_duration_seconds_count"],
				after["eastwest_writeback_writes_total"]-before["eastwest_writeback_writes_total"], idle/3)
			profiles()

			// A burst: 100 services change at once, once the write-back
			// has written the changes above (it may batch them).
			srv.writebackDone(b)
			want, ports, current := map[string]uint32{}, make([]int32, fanoutBurst), make([]*discoveryv1.EndpointSlice, fanoutBurst)
			for j := range fanoutBurst {
				svc := j * (fanoutServices / fanoutBurst)
				ports[j], current[j] = nextMarker(), getFanoutSlice(b, es, svc)
				want[names[svc]] = uint32(ports[j])
			}
			arm(b, st, want)
			publishes, pushes := srv.metric(b, "eastwest_publishes_total"), srv.metric(b, "eastwest_xds_pushes_total")
			burstStart := time.Now()
			concurrently(fanoutBurst, fanoutBurst, func(j int) {
				updateFanoutSlice(b, es, current[j], ports[j])
			})
			written := time.Since(burstStart)
			await(b, st, "the burst")
			burst := time.Since(burstStart)
			// When the apiserver had delivered the whole burst to the
			// benchmark's own watch: the floor under the burst.
			var burstWatched time.Duration
			for _, p := range ports {
				burstWatched = max(burstWatched, floor.at(b, p).Sub(burstStart))
			}
			b.Logf("burst: written in %v, at the benchmark's watch in %v, at every stream in %v, in %v publishes and %v responses", written.Round(time.Millisecond),
				burstWatched.Round(time.Millisecond), burst.Round(time.Millisecond),
				srv.metric(b, "eastwest_publishes_total")-publishes, srv.metric(b, "eastwest_xds_pushes_total")-pushes)

			b.ReportMetric(quantileMS(lat, 50), "p50-ms")
			b.ReportMetric(quantileMS(lat, 99), "p99-ms")
			b.ReportMetric(quantileMS(watched, 50), "watch-p50-ms")
			b.ReportMetric(quantileMS(watched, 99), "watch-p99-ms")
			b.ReportMetric(quantileMS(added, 50), "added-p50-ms")
			b.ReportMetric(quantileMS(added, 99), "added-p99-ms")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(changes), "cpu-ms/change")
			// What the member's apiserver and etcd spend per change: the
			// benchmark's own write and read, eastwest's watches and its
			// write-back (the same cores as everything else here).
			b.ReportMetric(float64(memberSpent.Microseconds())/1000/float64(changes), "member-cpu-ms/change")
			b.ReportMetric(float64(rss)/(1<<20), "rss-MB")
			b.ReportMetric(float64(srv.rss(b))/(1<<20), "rss-end-MB")
			b.ReportMetric(float64(burst.Microseconds())/1000, "burst-ms")
			b.ReportMetric(float64((burst-written).Microseconds())/1000, "burst-after-writes-ms")
			b.ReportMetric(float64(burstWatched.Microseconds())/1000, "burst-watch-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// quantileMS is the q-th percentile of ds, in milliseconds.
func quantileMS(ds []time.Duration, q int) float64 {
	slices.Sort(ds)
	n := len(ds)
	return float64(ds[min(n-1, n*q/100)].Microseconds()) / 1000
}

// apiserverWatch is the benchmark's own watch of the fan-out's
// EndpointSlices: when the apiserver delivers each change to a watcher.
// It is the floor under the streams' latency, which eastwest's informer
// cannot beat (the apiserver's write and watch delivery, on the same
// cores), reported beside it as watch-p50/p99.
type apiserverWatch struct {
	mu   sync.Mutex
	seen map[int32]time.Time
	more chan struct{}
}

// watchFanout starts the benchmark's watch (with the benchmark's
// protobuf client, as eastwest's informers read); it stops with the
// benchmark. It watches the member's own slices only, as eastwest's
// informers do: the MCS EndpointSlices the write-back writes beside them
// would cost this process a decode each on the shared cores.
func watchFanout(b *testing.B, es discoveryclient.EndpointSliceInterface) *apiserverWatch {
	b.Helper()
	wctx, cancel := context.WithCancel(ctx)
	// A watcher that falls behind (this process decodes every stream's
	// responses on the same cores) is closed by the apiserver; the watch
	// resumes where it stopped.
	opts := metav1.ListOptions{LabelSelector: source.OwnSlicesExcluded}
	list, err := es.List(wctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	w, err := watchtools.NewRetryWatcherWithContext(wctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = opts.LabelSelector
			return es.Watch(ctx, o)
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); w.Stop() })
	aw := &apiserverWatch{seen: map[int32]time.Time{}, more: make(chan struct{}, 1)}
	go func() {
		for ev := range w.ResultChan() {
			es, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok || len(es.Ports) == 0 || es.Ports[0].Port == nil {
				continue
			}
			aw.mu.Lock()
			aw.seen[*es.Ports[0].Port] = time.Now()
			aw.mu.Unlock()
			select {
			case aw.more <- struct{}{}:
			default:
			}
		}
	}()
	return aw
}

// at is when the watch saw the change that moved a slice to port.
func (aw *apiserverWatch) at(b *testing.B, port int32) time.Time {
	deadline := time.After(time.Minute)
	for {
		aw.mu.Lock()
		t, ok := aw.seen[port]
		aw.mu.Unlock()
		if ok {
			return t
		}
		select {
		case <-aw.more:
		case <-deadline:
			b.Fatalf("the apiserver's watch never delivered port %d", port)
		}
	}
}

// concurrently runs fn(0..n-1) on workers goroutines (apiserver writes
// wait on the network, not on a core).
func concurrently(n, workers int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// marker is the last endpoint port written: every change writes a new one,
// so no write is a no-op the apiserver drops.
var marker int32 = 20000

func nextMarker() int32 {
	marker++
	return marker
}

func fanoutName(i int) string { return fmt.Sprintf("svc-%04d", i) }

// populate writes the services, their EndpointSlices and exports.
func populate(b *testing.B, m *member, es discoveryclient.EndpointSliceInterface) {
	b.Helper()
	m.namespace(b, fanoutNamespace)
	start := time.Now()
	errs := make([]error, fanoutServices)
	concurrently(fanoutServices, 16, func(i int) {
		name := fanoutName(i)
		svc := clusterIPService(fanoutNamespace, name)
		if _, err := m.Client.CoreV1().Services(fanoutNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			errs[i] = err
			return
		}
		if _, err := es.Create(ctx, fanoutSlice(i, 8080), metav1.CreateOptions{}); err != nil {
			errs[i] = err
			return
		}
		se := &mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: fanoutNamespace, Name: name}}
		if _, err := m.mcs.MulticlusterV1beta1().ServiceExports(fanoutNamespace).Create(ctx, se, metav1.CreateOptions{}); err != nil {
			errs[i] = err
		}
	})
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d services x %d endpoints written in %v", fanoutServices, fanoutEndpoints, time.Since(start).Round(time.Millisecond))
}

func fanoutSlice(i int, port int32) *discoveryv1.EndpointSlice {
	name := fanoutName(i)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: fanoutNamespace, Name: name + "-src", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(port), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for j := range fanoutEndpoints {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 100+i/256, i%256, j+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
		})
	}
	return es
}

// getFanoutSlice reads service i's EndpointSlice (before the clock starts).
func getFanoutSlice(b *testing.B, es discoveryclient.EndpointSliceInterface, i int) *discoveryv1.EndpointSlice {
	cur, err := es.Get(ctx, fanoutName(i)+"-src", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return cur
}

// updateFanoutSlice moves a slice's endpoints to port: the marker its
// streams wait for.
func updateFanoutSlice(b *testing.B, es discoveryclient.EndpointSliceInterface, cur *discoveryv1.EndpointSlice, port int32) {
	cur.Ports[0].Port = ptr(port)
	if _, err := es.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		b.Error(err)
	}
}

// buildXDS builds the xds command into the test's folder.
func buildXDS(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "xds")
	goBin, err := exec.LookPath("go")
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/eastwest-dev/eastwest/cmd/xds") //nolint:gosec // the Go toolchain running this test
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// served is a running `xds serve` process.
type served struct {
	cmd        *exec.Cmd
	xds, debug string
	done       chan struct{}
}

func startServe(b *testing.B, bin, kubeconfigs string) *served {
	b.Helper()
	s := launchServe(b, bin, freeAddr(b), freeAddr(b), append([]string{"--kubeconfig-dir", kubeconfigs}, strings.Fields(os.Getenv("EASTWEST_FANOUT_ARGS"))...))
	s.waitReady(b, 3*time.Minute)
	return s
}

// launchServe starts `xds serve` on the addresses given (a restarted
// replica keeps its own) and stops it when the benchmark ends.
func launchServe(b *testing.B, bin, xds, debug string, args []string) *served {
	b.Helper()
	args = append([]string{"serve", "--xds-address", xds, "--debug-address", debug, "--log-level", "warn"}, args...)
	cmd := exec.Command(bin, args...) //nolint:gosec // the binary this test built
	cmd.Stderr = os.Stderr
	// Gone with the benchmark, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &served{cmd: cmd, xds: xds, debug: debug, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	b.Cleanup(s.stop)
	return s
}

// stop ends the process as Kubernetes ends a pod (SIGTERM, then SIGKILL
// after 10 s) and returns once it has exited.
func (s *served) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// ready reports whether /readyz answers 200.
func (s *served) ready() bool {
	resp, err := http.Get("http://" + s.debug + "/readyz") //nolint:gosec,noctx // the server this test started, on loopback
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *served) waitReady(b *testing.B, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !s.ready() {
		select {
		case <-s.done:
			b.Fatal("xds serve exited before it was ready")
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("xds serve not ready after %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// profile, when EASTWEST_FANOUT_PROFILES names a folder, saves the
// server's heap profile now, a CPU profile of what follows, and when the
// returned function is called, the heap profile again.
func (s *served) profile(b *testing.B, name string, seconds int) func() {
	dir := os.Getenv("EASTWEST_FANOUT_PROFILES")
	if dir == "" {
		return func() { time.Sleep(time.Duration(seconds) * time.Second) }
	}
	save := func(path, file string) {
		resp, err := http.Get("http://" + s.debug + path) //nolint:gosec,noctx // the server this test started, on loopback
		if err != nil {
			b.Error(err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			b.Error(err)
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}
	save("/debug/pprof/heap?gc=1", name+".heap")
	done := make(chan struct{})
	go func() {
		defer close(done)
		save(fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), name+".cpu")
	}()
	return func() {
		<-done
		// The allocations in between: go tool pprof -sample_index
		// alloc_space -base NAME.heap NAME-end.heap.
		save("/debug/pprof/heap", name+"-end.heap")
	}
}

// metrics reads the server's metrics, each name's samples summed.
func (s *served) metrics(b *testing.B) map[string]float64 {
	resp, err := http.Get("http://" + s.debug + "/metrics") //nolint:gosec,noctx // the server this test started, on loopback
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	out := map[string]float64{}
	for _, l := range strings.Split(string(body), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || strings.HasPrefix(l, "#") {
			continue
		}
		name, _, _ := strings.Cut(f[0], "{")
		v, _ := strconv.ParseFloat(f[1], 64)
		out[name] += v
	}
	return out
}

func (s *served) metric(b *testing.B, name string) float64 { return s.metrics(b)[name] }

// writebackDone waits until the server's write-back has nothing pending.
func (s *served) writebackDone(b *testing.B) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		pending, ok := s.metrics(b)["eastwest_writeback_pending_services"]
		if !ok || pending == 0 {
			return // done, or no write-back (--write-back=false)
		}
		if time.Now().After(deadline) {
			b.Fatal("write-back still pending after 10 minutes")
		}
		time.Sleep(time.Second)
	}
}

// cpu is the process's user and system time so far.
func (s *served) cpu(b *testing.B) time.Duration { return processCPU(b, s.cmd.Process.Pid) }

// memberCPU is the CPU time of a member's apiserver and etcd so far.
func memberCPU(b *testing.B, m *member) time.Duration {
	var sum time.Duration
	for _, pid := range m.PIDs() {
		sum += processCPU(b, pid)
	}
	return sum
}

// processCPU is a process's user and system time so far.
func processCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): utime and
	// stime are the 14th and 15th fields, in clock ticks of 10 ms.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// rss is the process's resident memory in bytes.
func (s *served) rss(b *testing.B) int64 { return processRSS(b, s.cmd.Process.Pid) }

// processRSS is a process's resident set size, in bytes.
func processRSS(b *testing.B, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// streams are the ADS streams: in this process, or, with
// EASTWEST_FANOUT_CLIENTS=process, in a child process of their own, as
// gateways are (then their decoding and ACKs do not share this process
// with the apiserver writes).
type streams interface {
	// expect arms a round: every stream must receive each name with
	// its port.
	expect(want map[string]uint32) error
	// wait returns the times the round's arrivals were seen.
	wait(timeout time.Duration) ([]time.Time, error)
}

func arm(b *testing.B, st streams, want map[string]uint32) {
	if err := st.expect(want); err != nil {
		b.Fatal(err)
	}
}

func await(b *testing.B, st streams, what string) []time.Time {
	at, err := st.wait(time.Minute)
	if err != nil {
		b.Fatalf("%s: %v", what, err)
	}
	return at
}

// startStreams starts the streams and returns once every one holds every
// name.
func startStreams(b *testing.B, addr string, names []string, delta bool) streams {
	if os.Getenv("EASTWEST_FANOUT_CLIENTS") == "process" {
		return startChild(b, addr, names, delta)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	fo := newFanout(names)
	for i := range fanoutStreams {
		go fo.follow(ctx, addr, i, delta)
	}
	if _, err := fo.wait(5 * time.Minute); err != nil {
		b.Fatalf("streams not synced: %v", err)
	}
	return fo
}

// childConfig is what the streams' process is told.
type childConfig struct {
	Address string   `json:"address"`
	Delta   bool     `json:"delta"`
	Names   []string `json:"names"`
}

const childEnv = "EASTWEST_FANOUT_CHILD"

// TestMain runs the tests, or, when BenchmarkFanout starts this binary
// with EASTWEST_FANOUT_CHILD set, its streams' process.
func TestMain(m *testing.M) {
	if raw := os.Getenv(childEnv); raw != "" {
		os.Exit(streamsProcess(raw))
	}
	if path := os.Getenv(scaleChildEnv); path != "" {
		os.Exit(scaleStreamsProcess(path))
	}
	os.Exit(m.Run())
}

// streamsProcess is BenchmarkFanout's streams' process (with
// EASTWEST_FANOUT_CLIENTS=process): it syncs every stream, says
// "synced", and for each "expect name=port,..." line says "armed", then
// "done t1 t2 ..." (arrival times, Unix nanoseconds) or "error ...".
func streamsProcess(raw string) int {
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Println("error", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fo := newFanout(cfg.Names)
	for i := range fanoutStreams {
		go fo.follow(ctx, cfg.Address, i, cfg.Delta)
	}
	if _, err := fo.wait(5 * time.Minute); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("synced")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		spec, ok := strings.CutPrefix(in.Text(), "expect ")
		if !ok {
			continue
		}
		want := map[string]uint32{}
		for _, kv := range strings.Split(spec, ",") {
			name, port, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseUint(port, 10, 32)
			want[name] = uint32(n)
		}
		_ = fo.expect(want)
		fmt.Println("armed")
		at, err := fo.wait(time.Minute)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		var line strings.Builder
		line.WriteString("done")
		for _, a := range at {
			fmt.Fprintf(&line, " %d", a.UnixNano())
		}
		fmt.Println(line.String())
	}
	return 0
}

// child is the streams' process, seen from the benchmark.
type child struct {
	in  io.Writer
	out *bufio.Scanner
}

func startChild(b *testing.B, addr string, names []string, delta bool) *child {
	cfg, _ := json.Marshal(childConfig{Address: addr, Delta: delta, Names: names})
	cmd := exec.Command(os.Args[0]) //nolint:gosec // this very test binary, as the streams' process (TestMain)
	cmd.Env = append(os.Environ(), childEnv+"="+string(cfg))
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := &child{in: in, out: bufio.NewScanner(out)}
	c.out.Buffer(make([]byte, 1<<20), 1<<24)
	if _, err := c.line("synced"); err != nil {
		b.Fatal(err)
	}
	return c
}

// line returns the fields after the next line starting with prefix.
func (c *child) line(prefix string) ([]string, error) {
	for c.out.Scan() {
		f := strings.Fields(c.out.Text())
		switch {
		case len(f) > 0 && f[0] == prefix:
			return f[1:], nil
		case len(f) > 0 && f[0] == "error":
			return nil, errors.New(c.out.Text())
		}
	}
	return nil, fmt.Errorf("the streams' process ended before %q", prefix)
}

func (c *child) expect(want map[string]uint32) error {
	var parts []string
	for name, port := range want {
		parts = append(parts, fmt.Sprintf("%s=%d", name, port))
	}
	if _, err := fmt.Fprintf(c.in, "expect %s\n", strings.Join(parts, ",")); err != nil {
		return err
	}
	_, err := c.line("armed")
	return err
}

func (c *child) wait(time.Duration) ([]time.Time, error) {
	f, err := c.line("done")
	if err != nil {
		return nil, err
	}
	out := make([]time.Time, 0, len(f))
	for _, v := range f {
		ns, _ := strconv.ParseInt(v, 10, 64)
		out = append(out, time.Unix(0, ns))
	}
	return out, nil
}

// fanout is the streams' shared record of what they received.
type fanout struct {
	names []string
	mu    sync.Mutex
	// have is what each stream holds, until it holds every name (the
	// first round).
	have      []map[string]bool
	want      map[string]uint32
	seen      []map[string]bool
	round     int
	remaining int
	arrivals  []time.Time
	done      chan struct{}
	failed    chan error
}

func newFanout(names []string) *fanout {
	fo := &fanout{names: names, done: make(chan struct{}), failed: make(chan error, fanoutStreams),
		remaining: fanoutStreams}
	for range fanoutStreams {
		fo.have = append(fo.have, map[string]bool{})
	}
	return fo
}

// expect arms the next round: every stream must receive each name with
// its port.
func (fo *fanout) expect(want map[string]uint32) error {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	fo.want, fo.arrivals = want, nil
	fo.round++
	fo.seen = make([]map[string]bool, fanoutStreams)
	for i := range fo.seen {
		fo.seen[i] = map[string]bool{}
	}
	fo.remaining = fanoutStreams * len(want)
	fo.done = make(chan struct{})
	return nil
}

// wait returns the round's arrival times once it is complete.
func (fo *fanout) wait(timeout time.Duration) ([]time.Time, error) {
	fo.mu.Lock()
	done := fo.done
	fo.mu.Unlock()
	select {
	case <-done:
	case err := <-fo.failed:
		return nil, fmt.Errorf("a stream failed: %w", err)
	case <-time.After(timeout):
		return nil, fmt.Errorf("not complete after %v", timeout)
	}
	fo.mu.Lock()
	defer fo.mu.Unlock()
	return fo.arrivals, nil
}

// got records that stream i received name; value gives its bytes when
// needed, and only the marker port is read from them (outside the lock:
// 100 streams read at once).
func (fo *fanout) got(i int, name string, value func() []byte) {
	fo.mu.Lock()
	if fo.want == nil {
		if !fo.have[i][name] {
			fo.have[i][name] = true
			if len(fo.have[i]) == len(fo.names) {
				fo.arrived()
			}
		}
		fo.mu.Unlock()
		return
	}
	port, ok := fo.want[name]
	round := fo.round
	fo.mu.Unlock()
	if !ok {
		return
	}
	if cptest.FirstPort(value()) != port {
		return
	}
	at := time.Now()
	fo.mu.Lock()
	defer fo.mu.Unlock()
	if fo.round != round || fo.seen[i][name] {
		return // a round that ended, or seen already
	}
	fo.seen[i][name] = true
	fo.arrivals = append(fo.arrivals, at)
	fo.arrived()
}

// arrived counts one expected arrival (fo.mu held).
func (fo *fanout) arrived() {
	fo.remaining--
	if fo.remaining == 0 {
		close(fo.done)
	}
}

// follow runs stream i until ctx ends, acknowledging every response as a
// gateway does.
func (fo *fanout) follow(ctx context.Context, addr string, i int, delta bool) {
	node := &corev3.Node{Id: fmt.Sprintf("fanout-%d", i), Cluster: "a"}
	err := cptest.FollowEndpoints(ctx, addr, node, fo.names, delta, func(name string, value func() []byte) { fo.got(i, name, value) })
	if err != nil && ctx.Err() == nil {
		fo.failed <- err
	}
}
