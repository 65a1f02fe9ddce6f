package multicluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/test/kube"
	"github.com/eastwest-dev/eastwest/test/memberapi"
)

// The scale benchmark's ClusterSet (issue 29). Members come in groups of
// scaleGroup; every member of group g exports scaleServices services of
// scaleEndpoints endpoints each (1,000 endpoints per member) in the
// namespace team-g, so each service is exported by scaleGroup members,
// and also holds the namespace of group g+1, whose services it imports
// without exporting them: each service is imported by 2 x scaleGroup
// members, and each member imports 2 x scaleServices services.
const (
	scaleGroup     = 5
	scaleServices  = 10
	scaleEndpoints = 100
)

// scaleSetting reads an EASTWEST_SCALE_* setting.
func scaleSetting(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv("EASTWEST_SCALE_" + name)); err == nil && n > 0 {
		return n
	}
	return def
}

func scaleMember(i int) string  { return fmt.Sprintf("m%03d", i) }
func scaleNS(g int) string      { return fmt.Sprintf("team-%03d", g) }
func scaleService(j int) string { return fmt.Sprintf("svc-%02d", j) }

// scaleClusterName is the Envoy cluster of service j of group g.
func scaleClusterName(g, j int) string {
	return fmt.Sprintf("%s.%s.svc.clusterset.local:80", scaleService(j), scaleNS(g))
}

// baseAddress is endpoint k of member i's service j before any change:
// unique in the ClusterSet, in 10.0.0.0/8.
func baseAddress(i, j, k int) string {
	idx := (i*scaleServices+j)*scaleEndpoints + k
	return fmt.Sprintf("10.%d.%d.%d", idx>>16, idx>>8&255, idx&255)
}

// markerAddress is the address change id gives an endpoint, in
// 172.16.0.0/12: the streams tell which changes reached them from the
// addresses they receive.
func markerAddress(id int) string {
	return fmt.Sprintf("172.%d.%d.%d", 16+id>>16, id>>8&255, id&255)
}

// markers returns the change ids in a serialized ClusterLoadAssignment:
// every SocketAddress.address (field 2, a string) that is a marker
// address. A byte scan, not a decode: a stream's process reads thousands
// of 500-endpoint assignments a second on the cores the servers use.
func markers(b []byte) []int {
	var out []int
	for i := 2; i+4 <= len(b); {
		at := bytes.Index(b[i:], []byte("172."))
		if at < 0 {
			break
		}
		i += at
		if n := int(b[i-1]); b[i-2] == 0x12 && n >= 10 && n <= 15 && i+n <= len(b) {
			var o [4]int
			if _, err := fmt.Sscanf(string(b[i:i+n]), "%d.%d.%d.%d", &o[0], &o[1], &o[2], &o[3]); err == nil && o[1] >= 16 && o[1] < 32 {
				out = append(out, (o[1]-16)<<16|o[2]<<8|o[3])
			}
		}
		i += 4
	}
	return out
}

// TestMarkersFindChangeIDs guards the scale benchmark's reading of what
// reached a stream: the change ids of the marker addresses in a
// serialized ClusterLoadAssignment, and none of the other addresses
// (which may hold 172 as any octet).
func TestMarkersFindChangeIDs(t *testing.T) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "svc-00.team-000.svc.clusterset.local:80"}
	var lbs []*endpointv3.LbEndpoint
	for _, a := range []string{baseAddress(0, 0, 0), "10.172.172.1", markerAddress(1), baseAddress(499, 9, 99), markerAddress(70000), "172.15.0.1", markerAddress(1<<20 - 1)} {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: a, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}}})
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	raw, err := proto.Marshal(cla)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := markers(raw), []int{1, 70000, 1<<20 - 1}; !slices.Equal(got, want) {
		t.Errorf("markers = %v, want %v", got, want)
	}
}

// scaleObject is one object of a member of the scale ClusterSet, with
// its resource.
type scaleObject struct {
	resource string
	obj      any
}

// scaleObjects are member i's (of n) namespaces, exported services and
// their endpoints, in the order they are created.
func scaleObjects(i, n int) []scaleObject {
	g := i / scaleGroup
	var out []scaleObject
	for _, ns := range []string{scaleNS(g), scaleNS((g + 1) % (n / scaleGroup))} {
		out = append(out, scaleObject{"namespaces", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}})
	}
	port, ready, http := int32(8080), true, "http"
	for j := range scaleServices {
		name, ns := scaleService(j), scaleNS(g)
		out = append(out, scaleObject{"services", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}})
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: &http, Port: &port}}}
		for k := range scaleEndpoints {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{baseAddress(i, j, k)}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
		}
		out = append(out, scaleObject{"endpointslices", es},
			scaleObject{"serviceexports", &mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}})
	}
	return out
}

// populateScale gives simulated member i (of n) its objects, directly.
func populateScale(sim *memberapi.Server, i, n int) error {
	m := sim.Member(scaleMember(i))
	for _, o := range scaleObjects(i, n) {
		if err := m.Create(o.resource, o.obj); err != nil {
			return err
		}
	}
	return nil
}

// scaleStream is one xDS stream of the benchmark, as its process is told.
type scaleStream struct {
	Address string   `json:"address"`
	Cluster string   `json:"cluster"`
	Role    string   `json:"role"`
	Names   []string `json:"names"`
	Replica int      `json:"replica"`
}

// scaleStreams spreads streams over the members and replicas: one
// gateway per member (its stream follows every service the member
// imports), then proxyless clients following two imported services each.
func scaleStreams(members, streams, replicas int, addrs []string) []scaleStream {
	groups := members / scaleGroup
	out := make([]scaleStream, streams)
	for t := range out {
		i := t % members
		g := i / scaleGroup
		var imports []string
		for _, gg := range []int{g, (g + 1) % groups} {
			for j := range scaleServices {
				imports = append(imports, scaleClusterName(gg, j))
			}
		}
		s := scaleStream{Cluster: scaleMember(i), Role: "gateway", Names: imports, Replica: t % replicas}
		if t >= members {
			s.Role, s.Names = "client", []string{imports[t%len(imports)], imports[(t*7+3)%len(imports)]}
			if s.Names[0] == s.Names[1] {
				s.Names = s.Names[:1]
			}
		}
		s.Address = addrs[s.Replica]
		out[t] = s
	}
	return out
}

const scaleChildEnv = "EASTWEST_SCALE_CHILD"

// scaleStreamsProcess is BenchmarkScale's streams' process: it follows
// every stream of the file it is given (reconnecting, as Envoy and gRPC
// do, when a replica goes away), says "synced NS" once each holds all
// its names, and "r STREAM ID NS" whenever a stream first holds the
// marker address of change ID.
func scaleStreamsProcess(path string) int {
	raw, err := os.ReadFile(path) //nolint:gosec // the file the benchmark wrote
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	var streams []scaleStream
	if err := json.Unmarshal(raw, &streams); err != nil {
		fmt.Println("error", err)
		return 2
	}
	var mu sync.Mutex
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	emit := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format, args...)
		mu.Unlock()
	}
	go func() {
		for range time.Tick(20 * time.Millisecond) {
			mu.Lock()
			_ = out.Flush()
			mu.Unlock()
		}
	}()
	var unsynced atomic.Int64
	unsynced.Store(int64(len(streams)))
	ctx := context.Background()
	for t, s := range streams {
		go func() {
			md, _ := structpb.NewStruct(map[string]any{"role": s.Role})
			node := &corev3.Node{Id: fmt.Sprintf("scale-%d", t), Cluster: s.Cluster, Metadata: md}
			held := map[string][]int{}
			synced := false
			for {
				err := cptest.FollowEndpoints(ctx, s.Address, node, s.Names, false, func(name string, value func() []byte) {
					ids := markers(value())
					for _, id := range ids {
						if !slices.Contains(held[name], id) {
							emit("r %d %d %d\n", t, id, time.Now().UnixNano())
						}
					}
					held[name] = ids
					if !synced && len(held) == len(s.Names) {
						synced = true
						if unsynced.Add(-1) == 0 {
							emit("synced %d\n", time.Now().UnixNano())
						}
					}
				})
				emit("reconnect %d %v\n", t, strings.ReplaceAll(fmt.Sprint(err), "\n", " "))
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	// Until the benchmark closes stdin or kills this process.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// scaleRun is one run of BenchmarkScale: the simulated members, the
// replicas, the streams and what they received.
type scaleRun struct {
	b        *testing.B
	sim      *memberapi.Server
	members  int
	streams  []scaleStream
	replicas []*served
	bin      string
	args     []string

	// subscribers of each Envoy cluster name: stream indexes.
	subscribers map[string][]int

	mu         sync.Mutex
	changed    map[int]scaleChange // change id -> what and when
	got        map[[2]int]int64    // (stream, change id) -> received, Unix ns
	reconnects map[int]int         // stream -> reconnections
	synced     chan int64          // the streams' "synced" time
}

type scaleChange struct {
	name string // the Envoy cluster
	at   int64  // committed, Unix ns
}

// readStreams records the streams' process's lines.
func (r *scaleRun) readStreams(out io.Reader) {
	lines := bufio.NewScanner(out)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		switch {
		case len(f) == 2 && f[0] == "synced":
			ns, _ := strconv.ParseInt(f[1], 10, 64)
			r.synced <- ns
		case len(f) == 4 && f[0] == "r":
			t, _ := strconv.Atoi(f[1])
			id, _ := strconv.Atoi(f[2])
			ns, _ := strconv.ParseInt(f[3], 10, 64)
			r.mu.Lock()
			if _, ok := r.got[[2]int{t, id}]; !ok {
				r.got[[2]int{t, id}] = ns
			}
			r.mu.Unlock()
		case len(f) >= 2 && f[0] == "reconnect":
			t, _ := strconv.Atoi(f[1])
			r.mu.Lock()
			r.reconnects[t]++
			r.mu.Unlock()
		case len(f) > 0 && f[0] == "error":
			r.b.Error("streams:", lines.Text())
		}
	}
}

// change makes change id: in one member, one endpoint of one service gets
// the change's marker address. Slots are taken in turn, so an endpoint
// changes again only after every other has (250,000 changes at 250
// members): each change reaches the streams on its own.
func (r *scaleRun) change(id int) error {
	i := id % r.members
	j := (id / r.members) % scaleServices
	k := (id / (r.members * scaleServices)) % scaleEndpoints
	g := i / scaleGroup
	name := scaleClusterName(g, j)
	at := time.Now().UnixNano()
	r.mu.Lock()
	r.changed[id] = scaleChange{name: name, at: at}
	r.mu.Unlock()
	return r.sim.Member(scaleMember(i)).Update("endpointslices", scaleNS(g), scaleService(j)+"-1", func(o map[string]any) {
		eps, _ := o["endpoints"].([]any)
		ep, _ := eps[k].(map[string]any)
		ep["addresses"] = []any{markerAddress(id)}
	})
}

// churn makes changes at rate per second from id first until stop is
// closed, open loop (each change at its time, whatever the others
// cost); it returns the next id.
func (r *scaleRun) churn(first, rate int, stop <-chan struct{}) int {
	start := time.Now()
	id := first
	for ; ; id++ {
		select {
		case <-stop:
			return id
		default:
		}
		time.Sleep(time.Until(start.Add(time.Duration(id-first) * time.Second / time.Duration(rate))))
		if err := r.change(id); err != nil {
			r.b.Errorf("change %d: %v", id, err)
			return id + 1
		}
	}
}

// latencies returns the change-to-stream latencies of changes [from, to)
// on the streams picked (all when pick is nil), and how many expected
// arrivals are missing.
func (r *scaleRun) latencies(from, to int, pick func(stream int) bool) ([]time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	missing := 0
	for id := from; id < to; id++ {
		c, ok := r.changed[id]
		if !ok {
			continue
		}
		for _, t := range r.subscribers[c.name] {
			if pick != nil && !pick(t) {
				continue
			}
			if ns, ok := r.got[[2]int{t, id}]; ok {
				out = append(out, time.Duration(ns-c.at))
			} else {
				missing++
			}
		}
	}
	return out, missing
}

// arrived waits until every change in [from, to) reached every stream
// following it, or timeout; it returns how many arrivals are missing.
func (r *scaleRun) arrived(from, to int, timeout time.Duration) int {
	return r.arrivedOn(from, to, nil, timeout)
}

// series reads a replica's metrics: every sample by its whole series
// (name and labels); nil when the replica does not answer.
func (s *served) series() map[string]float64 {
	resp, err := http.Get("http://" + s.debug + "/metrics") //nolint:gosec,noctx // the server this test started, on loopback
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		l := lines.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		at := strings.LastIndexByte(l, ' ')
		if at < 0 {
			continue
		}
		v, _ := strconv.ParseFloat(l[at+1:], 64)
		out[l[:at]] = v
	}
	return out
}

// sum adds the samples of a metric whose series hold every part.
func sum(series map[string]float64, name string, parts ...string) float64 {
	var total float64
	for k, v := range series {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(k, p)
		}
		if ok {
			total += v
		}
	}
	return total
}

// liveHeap is a replica's live heap: a collection first (the heap
// profile's gc=1), then the Go collector's heap_alloc.
func (s *served) liveHeap() float64 {
	resp, err := http.Get("http://" + s.debug + "/debug/pprof/heap?gc=1") //nolint:gosec,noctx // the server this test started, on loopback
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return sum(s.series(), "go_memstats_heap_alloc_bytes")
}

// leader returns the index of the replica that writes, or -1.
func (r *scaleRun) leader() int {
	for i, s := range r.replicas {
		if s != nil && sum(s.series(), "eastwest_writeback_leader") == 1 {
			return i
		}
	}
	return -1
}

// writes is the write-back's requests that change a member, over every
// simulated member: created, updated, deleted.
func (r *scaleRun) writes() (total int64, perMember []int64) {
	for i := range r.members {
		q := r.sim.Member(scaleMember(i)).Requests()
		n := q["create"] + q["update"] + q["delete"]
		perMember = append(perMember, n)
		total += n
	}
	return total, perMember
}

// writtenBack checks what the write-back wrote against the members'
// state: in every importing member, the MCS EndpointSlices of each
// service and source cluster hold exactly the source's addresses. It
// returns the first difference.
func (r *scaleRun) writtenBack() error {
	groups := r.members / scaleGroup
	source := map[string][]string{} // ns/svc/cluster -> addresses
	for i := range r.members {
		g := i / scaleGroup
		for _, o := range r.sim.Member(scaleMember(i)).List("endpointslices") {
			var es discoveryv1.EndpointSlice
			if err := fromMap(o, &es); err != nil {
				return err
			}
			if es.Namespace != scaleNS(g) || es.Labels[discoveryv1.LabelManagedBy] == mcs.ControllerName {
				continue
			}
			source[es.Namespace+"/"+es.Labels[discoveryv1.LabelServiceName]+"/"+scaleMember(i)] = addresses(&es)
		}
	}
	for i := range r.members {
		g := i / scaleGroup
		written := map[string][]string{}
		for _, o := range r.sim.Member(scaleMember(i)).List("endpointslices") {
			var es discoveryv1.EndpointSlice
			if err := fromMap(o, &es); err != nil {
				return err
			}
			if es.Labels[discoveryv1.LabelManagedBy] != mcs.ControllerName {
				continue
			}
			k := es.Namespace + "/" + es.Labels[mcsv1b1.LabelServiceName] + "/" + es.Labels[mcsv1b1.LabelSourceCluster]
			written[k] = append(written[k], addresses(&es)...)
		}
		for _, gg := range []int{g, (g + 1) % groups} {
			for src := gg * scaleGroup; src < (gg+1)*scaleGroup; src++ {
				for j := range scaleServices {
					k := scaleNS(gg) + "/" + scaleService(j) + "/" + scaleMember(src)
					w := written[k]
					slices.Sort(w)
					if !slices.Equal(w, source[k]) {
						return fmt.Errorf("member %s: the MCS slices of %s hold %d addresses, %d differ from the source's %d", scaleMember(i), k, len(w), differ(w, source[k]), len(source[k]))
					}
				}
			}
		}
	}
	return nil
}

func addresses(es *discoveryv1.EndpointSlice) []string {
	var out []string
	for _, ep := range es.Endpoints {
		out = append(out, ep.Addresses...)
	}
	slices.Sort(out)
	return out
}

func differ(a, b []string) int {
	n := 0
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			n++
		}
	}
	return n + max(0, len(b)-len(a))
}

func fromMap(o map[string]any, into any) error {
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, into)
}

// BenchmarkScale is issue 29's scale benchmark: eastwest against
// hundreds of simulated member clusters (test/memberapi, in this
// process), with 1,000 endpoints per member, 1,000 xDS streams (a
// gateway per member, the rest proxyless clients; in a process of their
// own) on 3 replicas of `xds serve` (real processes, electing their
// write-back leader with a Lease in a real apiserver), under a steady
// churn of endpoint changes. One run per member count:
//
//	EASTWEST_SCALE_MEMBERS=250,500 go test ./test/multicluster -run '^$' -bench Scale -benchtime 1x -timeout 120m
//
// (make bench-scale). Settings: EASTWEST_SCALE_MEMBERS (default 50),
// _STREAMS (1000), _REPLICAS (3), _CHURN (changes per second, 300),
// _SECONDS (of steady churn, 60). It reports, in order:
//   - cold start: every replica ready, every stream synced, the
//     write-back done;
//   - memory per replica (RSS, live heap), per member and per endpoint;
//   - under the churn: change-to-stream latency p50/p99 over every
//     stream that follows the changed service, CPU per change (the
//     replicas'), the write-back's writes per change and per member
//     apiserver;
//   - a follower replica restarted under the churn: ready, and its
//     streams caught up (every change made before it stopped);
//   - a leader failover under the churn: the new leader, and the
//     members' MCS EndpointSlices exactly right once the churn stops;
//   - a member cut off and back (its history compacted meanwhile, so
//     every replica relists it): its requests and the time to resync.
func BenchmarkScale(b *testing.B) {
	sizes := []int{50}
	if v := os.Getenv("EASTWEST_SCALE_MEMBERS"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2*scaleGroup || n%scaleGroup != 0 {
				b.Fatalf("EASTWEST_SCALE_MEMBERS=%q: each a multiple of %d, at least %d", v, scaleGroup, 2*scaleGroup)
			}
			sizes = append(sizes, n)
		}
	}
	streams, replicas := scaleSetting("STREAMS", 1000), scaleSetting("REPLICAS", 3)
	rate, seconds := scaleSetting("CHURN", 300), scaleSetting("SECONDS", 60)
	hub := kube.Start(b, "hub")[0]
	if _, err := hub.Client.CoreV1().Namespaces().Create(b.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "eastwest-system"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	bin := buildXDS(b)
	for _, members := range sizes {
		b.Run(fmt.Sprintf("%dmembers", members), func(b *testing.B) {
			for b.Loop() {
				runScale(b, hub, bin, members, streams, replicas, rate, seconds)
			}
		})
	}
}

func runScale(b *testing.B, hub *kube.Cluster, bin string, members, nstreams, nreplicas, rate, seconds int) {
	var names []string
	for i := range members {
		names = append(names, scaleMember(i))
	}
	sim := memberapi.Start(names...)
	b.Cleanup(sim.Close)
	for i := range members {
		if err := populateScale(sim, i, members); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	if err := sim.WriteKubeconfigs(dir, names...); err != nil {
		b.Fatal(err)
	}
	r := &scaleRun{b: b, sim: sim, members: members, bin: bin, subscribers: map[string][]int{},
		changed: map[int]scaleChange{}, got: map[[2]int]int64{}, reconnects: map[int]int{}, synced: make(chan int64, 1)}
	// A lease of 15 s (the default): a replica that stops releases it, so
	// the failover below is not the lease's wait.
	r.args = []string{"--kubeconfig-dir", dir, "--kubeconfig", hub.Kubeconfig, "--remote-secrets=false", "--namespace", "eastwest-system",
		"--lease-name", fmt.Sprintf("scale-%d", members)}
	// EASTWEST_SCALE_ARGS: more flags for the replicas (--log-level info).
	r.args = append(r.args, strings.Fields(os.Getenv("EASTWEST_SCALE_ARGS"))...)
	var xdsAddrs, debugAddrs []string
	for range nreplicas {
		xdsAddrs, debugAddrs = append(xdsAddrs, freeAddr(b)), append(debugAddrs, freeAddr(b))
	}
	r.streams = scaleStreams(members, nstreams, nreplicas, xdsAddrs)
	for t, s := range r.streams {
		for _, n := range s.Names {
			r.subscribers[n] = append(r.subscribers[n], t)
		}
	}
	cfg, _ := json.Marshal(r.streams)
	cfgPath := filepath.Join(b.TempDir(), "streams.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		b.Fatal(err)
	}

	// Cold start: the replicas and the streams start together, the
	// streams retrying until their replica listens.
	start := time.Now()
	for i := range nreplicas {
		r.replicas = append(r.replicas, launchServe(b, bin, xdsAddrs[i], debugAddrs[i], r.args))
	}
	child := exec.Command(os.Args[0]) //nolint:gosec // this very test binary, as the streams' process (TestMain)
	child.Env = append(os.Environ(), scaleChildEnv+"="+cfgPath)
	child.Stderr = os.Stderr
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stdin.Close(); _ = child.Process.Kill(); _ = child.Wait() })
	go r.readStreams(stdout)
	var ready time.Duration
	for _, s := range r.replicas {
		s.waitReady(b, 10*time.Minute)
		ready = max(ready, time.Since(start))
	}
	say(b, "%d members: every replica ready %v after start", members, ready.Round(time.Millisecond))
	var synced time.Duration
	select {
	case ns := <-r.synced:
		synced = time.Unix(0, ns).Sub(start)
	case <-time.After(15 * time.Minute):
		b.Fatal("the streams did not sync in 15 minutes")
	}
	say(b, "%d members: every stream synced %v after start", members, synced.Round(time.Millisecond))
	leader := -1
	waitUntil(b, 5*time.Minute, "a leader", func() bool { leader = r.leader(); return leader >= 0 })
	// The write-back is done when nothing is pending; its writes end
	// before that (the passes that follow find everything in place).
	// Past 10 minutes the churn starts anyway, and the log says so.
	var lastWrites int64
	lastWrite := time.Now()
	done := false
	deadline := time.Now().Add(10 * time.Minute)
	for !done && time.Now().Before(deadline) {
		if n, _ := r.writes(); n != lastWrites {
			lastWrites, lastWrite = n, time.Now()
		}
		m := r.replicas[leader].series()
		done = m != nil && sum(m, "eastwest_writeback_pending_services") == 0
		time.Sleep(time.Second)
	}
	written, lastWritten := time.Since(start), lastWrite.Sub(start)
	writesCold, _ := r.writes()
	state := "done"
	if !done {
		state = "still passing (not done)"
	}
	say(b, "%d members, %d endpoints, %d streams on %d replicas: ready %v, streams synced %v, write-back's last write %v (%d writes), %s at %v",
		members, members*scaleServices*scaleEndpoints, nstreams, nreplicas, ready.Round(time.Millisecond), synced.Round(time.Millisecond),
		lastWritten.Round(time.Second), writesCold, state, written.Round(time.Second))

	// Memory once settled.
	var rss, heap float64
	for _, s := range r.replicas {
		rss = max(rss, float64(s.rss(b)))
		heap = max(heap, s.liveHeap())
	}
	endpoints := float64(members * scaleServices * scaleEndpoints)
	say(b, "memory per replica (the largest): RSS %.0f MiB, live heap %.0f MiB: %.2f MiB RSS and %.2f MiB heap per member, %.2f KiB RSS per endpoint",
		rss/(1<<20), heap/(1<<20), rss/(1<<20)/float64(members), heap/(1<<20)/float64(members), rss/1024/endpoints)
	// The simulated members' own: what this machine can hold beside
	// eastwest (a 500-member run is bounded by it). GOMEMLIMIT bounds it.
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	say(b, "the simulated members (the benchmark's process): RSS %.0f MiB, live heap %.0f MiB (%.1f MiB a member)",
		float64(processRSS(b, os.Getpid()))/(1<<20), float64(ms.HeapAlloc)/(1<<20), float64(ms.HeapAlloc)/(1<<20)/float64(members))

	// Steady churn.
	stop := make(chan struct{})
	next := make(chan int, 1)
	var cpu0 []time.Duration
	for _, s := range r.replicas {
		cpu0 = append(cpu0, processCPU(b, s.cmd.Process.Pid))
	}
	writes0, perMember0 := r.writes()
	churnStart := time.Now()
	go func() { next <- r.churn(1, rate, stop) }()
	// The write-back's lag over the steady churn, as its metric says.
	var maxLag atomic.Int64
	sampled := make(chan struct{})
	go func() {
		for t := time.NewTicker(time.Second); ; {
			select {
			case <-sampled:
				t.Stop()
				return
			case <-t.C:
				lag := sum(r.replicas[leader].series(), "eastwest_writeback_lag_seconds")
				maxLag.Store(max(maxLag.Load(), int64(lag*1000)))
			}
		}
	}()
	if os.Getenv("EASTWEST_FANOUT_PROFILES") != "" {
		// The leader's and a follower's profiles over the churn's
		// first 20 s (or less).
		d := min(seconds, 20)
		fp := r.replicas[(leader+1)%nreplicas].profile(b, fmt.Sprintf("scale-%d-follower", members), d)
		r.replicas[leader].profile(b, fmt.Sprintf("scale-%d-leader", members), d)()
		fp()
		time.Sleep(time.Duration(seconds-d) * time.Second)
	} else {
		time.Sleep(time.Duration(seconds) * time.Second)
	}
	// Measured up to here; the churn goes on through the restart and
	// the failover.
	steadyEnd := r.lastChange()
	steady := time.Since(churnStart)
	close(sampled)
	var cpu, leaderCPU time.Duration
	for i, s := range r.replicas {
		spent := processCPU(b, s.cmd.Process.Pid) - cpu0[i]
		cpu += spent
		if i == leader {
			leaderCPU = spent
		}
	}
	writes1, perMember1 := r.writes()
	var busiest int64
	for i := range perMember1 {
		busiest = max(busiest, perMember1[i]-perMember0[i])
	}
	missing := r.arrived(1, steadyEnd, 30*time.Second)
	lat, _ := r.latencies(1, steadyEnd, nil)
	changes := float64(steadyEnd - 1)
	say(b, "churn: %d changes in %v (%.0f/s); %d arrivals at the streams, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d missing after 30 s",
		steadyEnd-1, steady.Round(time.Millisecond), changes/steady.Seconds(), len(lat), quantileMS(lat, 50), quantileMS(lat, 99), quantileMS(lat, 100), missing)
	followerCPU := (cpu - leaderCPU) / time.Duration(max(1, nreplicas-1))
	say(b, "churn: CPU per change %.2f ms on the leader (%.0f%% of a core), %.2f ms on each follower (%.0f%%); write-back %.2f writes per change, %.1f writes/s per member apiserver (the busiest %.1f/s), lag at most %v",
		float64(leaderCPU.Microseconds())/1000/changes, 100*leaderCPU.Seconds()/steady.Seconds(),
		float64(followerCPU.Microseconds())/1000/changes, 100*followerCPU.Seconds()/steady.Seconds(),
		float64(writes1-writes0)/changes, float64(writes1-writes0)/steady.Seconds()/float64(members), float64(busiest)/steady.Seconds(),
		time.Duration(maxLag.Load())*time.Millisecond)
	b.ReportMetric(quantileMS(lat, 50), "p50-ms")
	b.ReportMetric(quantileMS(lat, 99), "p99-ms")
	b.ReportMetric(synced.Seconds(), "s-synced")
	b.ReportMetric(rss/(1<<20), "rss-MiB")
	b.ReportMetric(float64(leaderCPU.Microseconds())/1000/changes, "leader-cpu-ms/change")
	b.ReportMetric(float64(followerCPU.Microseconds())/1000/changes, "follower-cpu-ms/change")

	// A follower restarted under the churn.
	// Its streams catch up with the changes made while it was away
	// (stopped, then starting): what they reconnect to must hold them.
	follower := (leader + 1) % nreplicas
	stopped := time.Now()
	from := r.lastChange()
	r.replicas[follower].stop()
	down := time.Since(stopped)
	restarted := time.Now()
	r.replicas[follower] = launchServe(b, bin, xdsAddrs[follower], debugAddrs[follower], r.args)
	r.replicas[follower].waitReady(b, 10*time.Minute)
	readyAgain := time.Since(restarted)
	to := r.lastChange()
	mine := func(t int) bool { return r.streams[t].Replica == follower }
	if missing := r.arrivedOn(from, to, mine, 5*time.Minute); missing > 0 {
		b.Errorf("restart: %d arrivals missing on the restarted replica's streams", missing)
	}
	caughtUp := r.lastArrival(from, to, mine) - restarted.UnixNano()
	say(b, "restart of a follower under the churn: stopped in %v, ready %v after its start; its streams had the %d changes made while it was away %v after its start",
		down.Round(time.Millisecond), readyAgain.Round(time.Millisecond), to-from, time.Duration(caughtUp).Round(time.Millisecond))
	b.ReportMetric(time.Duration(caughtUp).Seconds(), "s-restart-caught-up")

	// The leader fails over under the churn.
	failedAt := time.Now()
	r.replicas[leader].stop()
	old := leader
	r.replicas[old] = nil
	waitUntil(b, 2*time.Minute, "a new leader", func() bool { leader = r.leader(); return leader >= 0 })
	newLeader := time.Since(failedAt)
	time.Sleep(5 * time.Second)
	close(stop)
	last := <-next
	churnEnd := time.Now()
	r.replicas[old] = launchServe(b, bin, xdsAddrs[old], debugAddrs[old], r.args)
	// Nothing lost: every change at every stream, and every member's MCS
	// slices exactly right.
	if missing := r.arrived(1, last, 5*time.Minute); missing > 0 {
		b.Errorf("%d arrivals missing at the end", missing)
	}
	var wbErr error
	waitUntil(b, 10*time.Minute, "the write-back right in every member", func() bool {
		wbErr = r.writtenBack()
		return wbErr == nil
	})
	say(b, "leader failover under the churn: a new leader in %v; once the churn stopped, every member's MCS slices right in %v; %d changes in all, every one at every stream",
		newLeader.Round(time.Millisecond), time.Since(churnEnd).Round(time.Millisecond), last-1)
	b.ReportMetric(newLeader.Seconds(), "s-failover")

	// A member cut off and back, its history compacted meanwhile: every
	// replica relists it.
	r.replicas[old].waitReady(b, 10*time.Minute)
	m := sim.Member(scaleMember(0))
	req0 := m.Requests()
	var cpuBefore time.Duration
	for _, s := range r.replicas {
		cpuBefore += processCPU(b, s.cmd.Process.Pid)
	}
	m.SetDown(true)
	m.Compact()
	waitUntil(b, time.Minute, "member m000 seen unreachable", func() bool {
		for _, s := range r.replicas {
			if sum(s.series(), "eastwest_source_connection_state", `member="m000"`, `state="synced"`) != 0 {
				return false
			}
		}
		return true
	})
	m.SetDown(false)
	back := time.Now()
	waitUntil(b, 5*time.Minute, "member m000 synced again", func() bool {
		for _, s := range r.replicas {
			if sum(s.series(), "eastwest_source_connection_state", `member="m000"`, `state="synced"`) != 1 {
				return false
			}
		}
		return true
	})
	resynced := time.Since(back)
	var cpuAfter time.Duration
	for _, s := range r.replicas {
		cpuAfter += processCPU(b, s.cmd.Process.Pid)
	}
	req1 := m.Requests()
	say(b, "member cut off and back (relist): synced again on every replica in %v; %d lists, %d watches, %d refused; the replicas' CPU %v",
		resynced.Round(time.Millisecond), req1["list"]-req0["list"], req1["watch"]-req0["watch"], req1["refused"]-req0["refused"], (cpuAfter - cpuBefore).Round(time.Millisecond))
	b.ReportMetric(0, "ns/op")
}

// say logs a figure, and prints it at once too: a benchmark's log is
// printed only when it ends, and a run of 500 members takes long enough
// to want its figures as they come.
func say(b *testing.B, format string, args ...any) {
	b.Helper()
	b.Logf(format, args...)
	fmt.Fprintf(os.Stderr, "BenchmarkScale %s: %s\n", time.Now().Format(time.TimeOnly), fmt.Sprintf(format, args...))
}

// lastChange is the next change id not yet made.
func (r *scaleRun) lastChange() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changed) + 1
}

// arrivedOn is arrived for the streams picked.
func (r *scaleRun) arrivedOn(from, to int, pick func(int) bool, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		_, missing := r.latencies(from, to, pick)
		if missing == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastArrival is when the last of changes [from, to) reached the last of
// the streams picked, Unix ns.
func (r *scaleRun) lastArrival(from, to int, pick func(int) bool) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last int64
	for id := from; id < to; id++ {
		for _, t := range r.subscribers[r.changed[id].name] {
			if pick(t) {
				last = max(last, r.got[[2]int{t, id}])
			}
		}
	}
	return last
}

func waitUntil(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
