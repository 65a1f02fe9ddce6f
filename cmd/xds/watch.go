package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// runWatch is a tiny xDS client for newcomers: it connects over delta ADS
// as a node of a member cluster, subscribes to every cluster and its
// endpoints as a gateway or proxyless client does, acknowledges what it
// gets (so `xds status` shows it SYNCED), and prints each service port's
// endpoints by priority whenever they change: edit the ClusterSet folder
// and watch the change arrive. Like Envoy, it waits for a control plane
// that is not up yet and reconnects to one that restarts (and then
// prints every endpoint again, as a new stream gets everything). It
// speaks plaintext to a control plane on loopback (make run), TLS with
// --xds-ca (and mutual TLS with --xds-cert and --xds-key).
func runWatch(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return watchCommand(ctx, args, stdout, stderr)
}

// watchCommand is `xds watch` until ctx ends.
func watchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("xds-address", "127.0.0.1:18000", "the control plane's xDS address")
	tlsConfig := clientTLSFlags(fs, "xds", "the xDS server", "serve --xds-tls-client-ca: a certificate naming the node, docs/xds.md")
	cluster := fs.String("node-cluster", "east", "the member cluster the client is in (node.cluster)")
	role := fs.String("role", string(translate.RoleClient), "client or gateway (node.metadata.role)")
	zone := fs.String("zone", "", "the Kubernetes zone the client says it runs in (node.locality.sub_zone): services whose trafficDistribution prefers it order its endpoints first")
	id := fs.String("node", "", "node.id (default xds-watch-<pid>)")
	count := fs.Int("updates", 0, "exit after this many endpoint updates (0: until Ctrl-C)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: xds watch [--node-cluster ID] [--role client|gateway] [--xds-address HOST:PORT] [--xds-ca FILE [--xds-cert FILE --xds-key FILE]]")
		fmt.Fprintln(stderr, "\nConnects as an xDS client of a member cluster and prints every service port's endpoints")
		fmt.Fprintln(stderr, "as they change (try it beside `make run`, then edit examples/clusterset). It waits for a")
		fmt.Fprintln(stderr, "control plane that is not up yet, and reconnects when the control plane restarts; it says")
		fmt.Fprintln(stderr, "when it cannot reach the control plane and when it is connected. Draining endpoints are marked.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if code, ok := parseNoArgs(fs, args, stderr, ""); !ok {
		return code
	}
	if *role != string(translate.RoleClient) && *role != string(translate.RoleGateway) {
		fmt.Fprintf(stderr, "xds watch: --role must be client or gateway, not %q\n", *role)
		return 2
	}
	if *id == "" {
		*id = fmt.Sprintf("xds-watch-%d", os.Getpid())
	}
	creds := insecure.NewCredentials()
	if cfg, err := tlsConfig(); err != nil {
		fmt.Fprintln(stderr, "xds watch:", err)
		return 2
	} else if cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	w := &watcher{addr: *addr, id: *id, cluster: *cluster, role: *role, zone: *zone, count: *count, out: stdout, log: stderr, creds: creds}
	if err := w.run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

// watcher is one `xds watch`: its node, and the endpoint updates printed
// so far (over every stream, for --updates).
type watcher struct {
	addr, id, cluster, role string
	zone                    string
	count                   int
	out, log                io.Writer
	updates                 int
	creds                   credentials.TransportCredentials
}

// errEnough ends the watch once --updates endpoint updates were printed.
var errEnough = errors.New("enough updates")

// The pause before opening another stream after one ended; it doubles up
// to the maximum while streams keep ending without a response. (gRPC
// itself backs off between failed connections.)
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 5 * time.Second
	// watchQuietHint is how long a stream may go unanswered before the
	// watch says where to look.
	watchQuietHint = 3 * time.Second
)

// run opens a stream, and another whenever one ends for a reason a new
// one can cure (the control plane went away or shut down); it returns on
// any other error, when ctx ends, or once enough updates were printed.
func (w *watcher) run(ctx context.Context) error {
	conn, err := grpc.NewClient(w.addr, grpc.WithTransportCredentials(w.creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(w.out, "watching %s as node %s (cluster %s, role %s); Ctrl-C stops\n", w.addr, w.id, w.cluster, w.role)
	stateCtx, stopState := context.WithCancel(ctx)
	defer stopState()
	go w.connectivity(stateCtx, conn)
	pause := watchRetryMin
	for {
		answered, err := w.stream(ctx, conn)
		switch {
		case errors.Is(err, errEnough):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !reconnectable(err):
			return err
		}
		if answered {
			pause = watchRetryMin
		}
		fmt.Fprintf(w.log, "%s  stream ended (%v); connecting again\n", time.Now().Format("15:04:05.000"), err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, watchRetryMax)
	}
}

// connectivity says when the control plane cannot be reached (once per
// outage: gRPC keeps retrying with its backoff) and when the connection
// is up again, until ctx ends.
func (w *watcher) connectivity(ctx context.Context, conn *grpc.ClientConn) {
	conn.Connect()
	state, down := conn.GetState(), false
	for conn.WaitForStateChange(ctx, state) {
		state = conn.GetState()
		switch {
		case state == connectivity.Ready:
			fmt.Fprintf(w.log, "%s  connected to %s\n", time.Now().Format("15:04:05.000"), w.addr)
			down = false
		case state == connectivity.TransientFailure && !down:
			fmt.Fprintf(w.log, "%s  cannot reach %s (is xds serve running there? with TLS, are --xds-ca and the server name right?); retrying\n", time.Now().Format("15:04:05.000"), w.addr)
			down = true
		}
	}
}

// reconnectable is whether a new stream can cure what ended the last:
// the control plane closed it (a restart, a drain) or could not be
// reached. A refusal (an invalid node, a denied identity) is final.
func reconnectable(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.Canceled:
		return true
	}
	return false
}

// stream is one ADS stream: every cluster (wildcard), and the endpoints of
// those it names. answered says whether the control plane sent anything.
func (w *watcher) stream(ctx context.Context, conn *grpc.ClientConn) (answered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// WaitForReady: a control plane that is not up yet is waited for
	// (gRPC retries the connection with its own backoff).
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return false, err
	}
	meta, _ := structpb.NewStruct(map[string]any{"role": w.role})
	node := &corev3.Node{Id: w.id, Cluster: w.cluster, Metadata: meta}
	if w.zone != "" {
		node.Locality = &corev3.Locality{SubZone: w.zone}
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		return false, err
	}
	// The control plane keeps a node it cannot serve yet (a member that
	// has not joined, say) and sends it nothing; say where the reason is.
	quiet := time.AfterFunc(watchQuietHint, func() {
		fmt.Fprintf(w.log, "%s  no answer after %v: `xds status` says why the control plane sends node %s nothing\n", time.Now().Format("15:04:05.000"), watchQuietHint, w.id)
	})
	defer quiet.Stop()
	subscribed := map[string]bool{} // clusters whose endpoints this stream asked for
	shown := map[string]bool{}      // endpoints printed and not yet shown removed
	for {
		resp, err := stream.Recv()
		if err != nil {
			return answered, err
		}
		answered = true
		quiet.Stop()
		var add, drop []string
		for _, r := range resp.Resources {
			switch resp.TypeUrl {
			case resourcev3.ClusterType:
				if !subscribed[r.Name] && !strings.HasPrefix(r.Name, "eastwest-") {
					subscribed[r.Name] = true
					add = append(add, r.Name)
				}
			case resourcev3.EndpointType:
				var cla endpointv3.ClusterLoadAssignment
				if err := r.Resource.UnmarshalTo(&cla); err != nil {
					return answered, err
				}
				shown[r.Name] = true
				fmt.Fprintf(w.out, "%s  %s  %s\n", time.Now().Format("15:04:05.000"), r.Name, describeEndpoints(&cla))
				w.updates++
			}
		}
		// A removed cluster's endpoints are removed first (make before
		// break in reverse); each removal is printed once either way.
		for _, name := range resp.RemovedResources {
			if shown[name] {
				delete(shown, name)
				fmt.Fprintf(w.out, "%s  %s  removed\n", time.Now().Format("15:04:05.000"), name)
			}
			if resp.TypeUrl == resourcev3.ClusterType && subscribed[name] {
				delete(subscribed, name)
				drop = append(drop, name)
			}
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce}); err != nil {
			return answered, err
		}
		if len(add) > 0 || len(drop) > 0 {
			slices.Sort(add)
			slices.Sort(drop)
			if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: drop}); err != nil {
				return answered, err
			}
		}
		if w.count > 0 && w.updates >= w.count {
			return answered, errEnough
		}
	}
}

// describeEndpoints is a load assignment on one line: per locality its
// priority, member, weight and addresses.
func describeEndpoints(cla *endpointv3.ClusterLoadAssignment) string {
	if len(cla.Endpoints) == 0 {
		return "no endpoints"
	}
	var parts []string
	for _, l := range cla.Endpoints {
		var addrs []string
		for _, e := range l.LbEndpoints {
			if a := e.GetEndpoint().GetAddress().GetSocketAddress(); a != nil {
				addr := fmt.Sprintf("%s:%d", a.GetAddress(), a.GetPortValue())
				if e.GetHealthStatus() == corev3.HealthStatus_DRAINING {
					addr += "(draining)"
				}
				addrs = append(addrs, addr)
			}
		}
		parts = append(parts, fmt.Sprintf("p%d %s w%d [%s]", l.Priority, l.GetLocality().GetRegion(), l.GetLoadBalancingWeight().GetValue(), strings.Join(addrs, " ")))
	}
	return strings.Join(parts, "; ")
}
