package main

import (
	"context"
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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// runWatch is a tiny xDS client for newcomers: it connects over delta ADS
// as a node of a member cluster, subscribes to every cluster and its
// endpoints as a gateway or proxyless client does, acknowledges what it
// gets (so `xds status` shows it SYNCED), and prints each service port's
// endpoints by priority whenever they change: edit the ClusterSet folder
// and watch the change arrive. It needs no TLS: it is for a control plane
// on loopback (make run).
func runWatch(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("xds-address", "127.0.0.1:18000", "the control plane's xDS address (plaintext)")
	cluster := fs.String("node-cluster", "east", "the member cluster the client is in (node.cluster)")
	role := fs.String("role", string(translate.RoleClient), "client or gateway (node.metadata.role)")
	id := fs.String("node", "", "node.id (default xds-watch-<pid>)")
	count := fs.Int("updates", 0, "exit after this many endpoint updates (0: until Ctrl-C)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: xds watch [--node-cluster ID] [--role client|gateway] [--xds-address HOST:PORT]")
		fmt.Fprintln(stderr, "\nConnects as an xDS client of a member cluster and prints every service port's endpoints")
		fmt.Fprintln(stderr, "as they change (try it beside `make run`, then edit examples/clusterset).")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) > 0 || (*role != string(translate.RoleClient) && *role != string(translate.RoleGateway)) {
		fs.Usage()
		return 2
	}
	if *id == "" {
		*id = fmt.Sprintf("xds-watch-%d", os.Getpid())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := watch(ctx, *addr, *id, *cluster, *role, *count, stdout); err != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

func watch(ctx context.Context, addr, id, cluster, role string, count int, out io.Writer) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	meta, _ := structpb.NewStruct(map[string]any{"role": role})
	node := &corev3.Node{Id: id, Cluster: cluster, Metadata: meta}
	// Every cluster (wildcard), and the endpoints of those it names.
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		return err
	}
	fmt.Fprintf(out, "watching %s as node %s (cluster %s, role %s); Ctrl-C stops\n", addr, id, cluster, role)
	subscribed := map[string]bool{}
	updates := 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		var add []string
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
					return err
				}
				fmt.Fprintf(out, "%s  %s  %s\n", time.Now().Format("15:04:05.000"), r.Name, describeEndpoints(&cla))
				updates++
			}
		}
		for _, name := range resp.RemovedResources {
			fmt.Fprintf(out, "%s  %s  removed\n", time.Now().Format("15:04:05.000"), name)
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce}); err != nil {
			return err
		}
		if len(add) > 0 {
			slices.Sort(add)
			if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: add}); err != nil {
				return err
			}
		}
		if count > 0 && updates >= count {
			return nil
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
				addrs = append(addrs, fmt.Sprintf("%s:%d", a.GetAddress(), a.GetPortValue()))
			}
		}
		parts = append(parts, fmt.Sprintf("p%d %s w%d [%s]", l.Priority, l.GetLocality().GetRegion(), l.GetLoadBalancingWeight().GetValue(), strings.Join(addrs, " ")))
	}
	return strings.Join(parts, "; ")
}
