package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/eastwest-dev/eastwest/pkg/cache"
)

// childEnv, when set, makes this binary the clients' process; its value is
// the JSON clientConfig.
const childEnv = "EASTWEST_LOAD_CLIENTS"

// Config is one run of the harness.
type Config struct {
	Clients   int
	Services  int
	Endpoints int
	// Changes is the number of one-service changes measured for our
	// cache; SlowChanges for go-control-plane's (which are far slower).
	Changes     int
	SlowChanges int
	Caches      []string // ours, linear, snapshot
	Protocols   []string // sotw, delta
	profile     *os.File
}

// Result is what one cache and protocol achieved.
type Result struct {
	Cache, Protocol string
	ColdSync        time.Duration
	P50, P99, Max   time.Duration
	CPUPerChange    time.Duration
	Changes         int
}

func main() {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(clientsMain(cfg, os.Stdin, os.Stdout))
	}
	var cfg Config
	var caches, protocols string
	flag.IntVar(&cfg.Clients, "clients", 100, "simulated ADS clients")
	flag.IntVar(&cfg.Services, "services", 1000, "services (one ClusterLoadAssignment each)")
	flag.IntVar(&cfg.Endpoints, "endpoints", 100, "endpoints per service")
	flag.IntVar(&cfg.Changes, "changes", 50, "one-service changes measured for eastwest's cache")
	flag.IntVar(&cfg.SlowChanges, "slow-changes", 5, "one-service changes measured for go-control-plane's caches")
	flag.StringVar(&caches, "caches", "ours,linear,snapshot", "caches to measure")
	flag.StringVar(&protocols, "protocols", "sotw,delta", "protocols to measure")
	cpuProfile := flag.String("cpuprofile", "", "write the server's CPU profile of the changes (not the cold syncs) of the first run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
		cfg.profile = f
	}
	cfg.Caches, cfg.Protocols = strings.Split(caches, ","), strings.Split(protocols, ",")
	results, err := Run(cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return
	}
	fmt.Printf("%d clients, %d services x %d endpoints\n", cfg.Clients, cfg.Services, cfg.Endpoints)
	Print(os.Stdout, results)
}

// Print renders results as a table.
func Print(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CACHE\tPROTOCOL\tCOLD SYNC\tCHANGE P50\tP99\tMAX\tSERVER CPU/CHANGE\tCHANGES")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%v\t%v\t%v\t%d\n", r.Cache, r.Protocol, r.ColdSync.Round(time.Millisecond),
			r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.Max.Round(10*time.Microsecond),
			r.CPUPerChange.Round(10*time.Microsecond), r.Changes)
	}
	_ = tw.Flush()
}

// Run measures every cache and protocol in turn.
func Run(cfg Config, log io.Writer) ([]Result, error) {
	var out []Result
	for _, p := range cfg.Protocols {
		for _, c := range cfg.Caches {
			fmt.Fprintf(log, "measuring %s over %s...\n", c, p)
			r, err := runOne(&cfg, c, p)
			if err != nil {
				return out, fmt.Errorf("%s/%s: %w", c, p, err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("svc-%d.ns.svc.clusterset.local:80", i)
	}
	return out
}

// assignment is service i's endpoints; marker goes into the first
// endpoint's port so clients can tell which version they got.
func assignment(name string, i, endpoints int, marker uint32) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for c := range 3 {
		loc := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Region: fmt.Sprint("cluster-", c)}, Priority: uint32(min(c, 1)), LoadBalancingWeight: wrapperspb.UInt32(1)}
		for e := c; e < endpoints; e += 3 {
			port := uint32(8080)
			if e == 0 {
				port = marker
			}
			loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
					Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: fmt.Sprintf("10.%d.%d.%d", c, i%250, e%250), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}}},
				HealthStatus: corev3.HealthStatus_HEALTHY,
			})
		}
		cla.Endpoints = append(cla.Endpoints, loc)
	}
	return cla
}

// server is a cache under test behind go-control-plane's server.
type server interface {
	cachev3.Cache
	set(name string, cla *endpointv3.ClusterLoadAssignment)
}

type ours struct{ *cache.Cache }

func (o ours) set(name string, cla *endpointv3.ClusterLoadAssignment) {
	_ = o.Apply([]cache.Update{{View: "load", Type: resourcev3.EndpointType, Set: []cache.Resource{{Name: name, Message: cla}}}})
}

type linear struct{ *cachev3.LinearCache }

func (l linear) set(name string, cla *endpointv3.ClusterLoadAssignment) {
	_ = l.UpdateResource(name, cla)
}

// snapshot is SnapshotCache as its users drive it: a new snapshot of the
// whole type, set for every node.
type snapshot struct {
	cachev3.SnapshotCache
	clients   int
	resources map[string]types.Resource
	version   int
}

func (s *snapshot) set(name string, cla *endpointv3.ClusterLoadAssignment) {
	s.resources[name] = cla
	s.version++
	list := make([]types.Resource, 0, len(s.resources))
	for _, r := range s.resources {
		list = append(list, r)
	}
	snap, err := cachev3.NewSnapshot(strconv.Itoa(s.version), map[resourcev3.Type][]types.Resource{resourcev3.EndpointType: list})
	if err != nil {
		panic(err)
	}
	for i := range s.clients {
		_ = s.SetSnapshot(context.Background(), nodeID(i), snap)
	}
}

func nodeID(i int) string { return fmt.Sprintf("load-%d", i) }

func newServer(kind string, cfg Config, all []string) (server, error) {
	switch kind {
	case "ours":
		c := cache.New(func(*corev3.Node) (string, error) { return "load", nil })
		c.SetViews([]string{"load"})
		s := ours{c}
		var set []cache.Resource
		for i, n := range all {
			set = append(set, cache.Resource{Name: n, Message: assignment(n, i, cfg.Endpoints, 1)})
		}
		return s, c.Apply([]cache.Update{{View: "load", Type: resourcev3.EndpointType, Set: set}})
	case "linear":
		init := map[string]types.Resource{}
		for i, n := range all {
			init[n] = assignment(n, i, cfg.Endpoints, 1)
		}
		return linear{cachev3.NewLinearCache(resourcev3.EndpointType, cachev3.WithInitialResources(init))}, nil
	case "snapshot":
		s := &snapshot{SnapshotCache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), clients: cfg.Clients, resources: map[string]types.Resource{}}
		for i, n := range all[1:] {
			s.resources[n] = assignment(n, i+1, cfg.Endpoints, 1)
		}
		s.set(all[0], assignment(all[0], 0, cfg.Endpoints, 1))
		return s, nil
	}
	return nil, fmt.Errorf("unknown cache %q", kind)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clientConfig is what the clients' process is told.
type clientConfig struct {
	Address  string   `json:"address"`
	Clients  int      `json:"clients"`
	Protocol string   `json:"protocol"`
	Names    []string `json:"names"`
}

func runOne(cfg *Config, kind, protocol string) (Result, error) {
	all := names(cfg.Services)
	srv, err := newServer(kind, *cfg, all)
	if err != nil {
		return Result{}, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var g *grpc.Server
	if o, ok := srv.(ours); ok {
		// eastwest's own server, as xds serve runs it.
		g = grpc.NewServer(append(cache.ServerOptions(), grpc.MaxConcurrentStreams(1<<20))...)
		discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, cache.NewServer(ctx, o.Cache, nil))
	} else {
		g = grpc.NewServer(grpc.MaxConcurrentStreams(1 << 20))
		discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, srv, nil))
	}
	go func() { _ = g.Serve(l) }()
	defer g.Stop()

	cc, _ := json.Marshal(clientConfig{Address: l.Addr().String(), Clients: cfg.Clients, Protocol: protocol, Names: all})
	self, err := os.Executable()
	if err != nil {
		return Result{}, err
	}
	child := exec.Command(self, "-test.run=^TestMain$") //nolint:gosec // this very binary, re-executed as the clients' process
	child.Env = append(os.Environ(), childEnv+"="+string(cc))
	child.Stderr = os.Stderr
	stdin, _ := child.StdinPipe()
	stdoutPipe, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		return Result{}, err
	}
	defer func() { _ = stdin.Close(); _ = child.Wait() }()
	lines := bufio.NewScanner(stdoutPipe)
	lines.Buffer(make([]byte, 1<<20), 1<<24)
	expect := func(prefix string) ([]string, error) {
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			if len(f) > 0 && f[0] == prefix {
				return f[1:], nil
			}
		}
		return nil, fmt.Errorf("clients' process ended before %q: %w", prefix, lines.Err())
	}

	f, err := expect("synced")
	if err != nil {
		return Result{}, err
	}
	cold, _ := strconv.ParseInt(f[0], 10, 64)
	r := Result{Cache: kind, Protocol: protocol, ColdSync: time.Duration(cold)}
	changes := cfg.Changes
	if kind != "ours" {
		changes = cfg.SlowChanges
	}
	var lat []time.Duration
	var cpu time.Duration
	if cfg.profile != nil {
		_ = pprof.StartCPUProfile(cfg.profile)
		defer func() { pprof.StopCPUProfile(); _ = cfg.profile.Close(); cfg.profile = nil }()
	}
	for i := range changes {
		svc := (i * 7919) % cfg.Services
		marker := uint32(10000 + i)
		fmt.Fprintf(stdin, "change %d %s %d\n", i, all[svc], marker)
		if _, err := expect("armed"); err != nil {
			return r, err
		}
		cla := assignment(all[svc], svc, cfg.Endpoints, marker)
		c0 := cpuTime()
		t0 := time.Now()
		srv.set(all[svc], cla)
		f, err := expect("received")
		if err != nil {
			return r, err
		}
		cpu += cpuTime() - c0
		for _, s := range f[1:] {
			ns, _ := strconv.ParseInt(s, 10, 64)
			lat = append(lat, time.Unix(0, ns).Sub(t0))
		}
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		r.P50, r.P99, r.Max = lat[n/2], lat[min(n-1, n*99/100)], lat[n-1]
		r.CPUPerChange = cpu / time.Duration(changes)
	}
	r.Changes = changes
	return r, nil
}
