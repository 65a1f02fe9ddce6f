package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/pkg/assemble"
	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/pkg/writeback"
)

func runTranslate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("translate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "ClusterSet folder: one subfolder of Kubernetes YAML per member cluster (required)")
	cluster := fs.String("cluster", "", "print only the objects of this member cluster (by cluster ID)")
	clusterSet := fs.String("clusterset", "", "the ClusterSet's name; members whose clusterset.k8s.io property names another set are left out")
	gatewayNS := fs.String("gateway-namespace", mcs.DefaultGatewayNamespace, "the namespace of every member's east-west gateway Services and tunnel Secrets (as xds serve --gateway-namespace)")
	watch := fs.Bool("watch", false, "keep watching the folder and print the whole state again after every change")
	nodeCluster := fs.String("node-cluster", "", "print the Envoy resources an xDS client in this member cluster gets, instead of the MCS objects")
	role := fs.String("role", string(translate.RoleClient), "with --node-cluster: the client's role, client (proxyless gRPC), gateway (east-west Envoy) or gateway-api (an Envoy implementing --gateway)")
	gatewayName := fs.String("gateway", "", "with --role gateway-api: the Gateway, as namespace/name")
	zone := fs.String("zone", "", "with --role client or gateway: the Kubernetes zone the client says it runs in (node.locality.sub_zone), for services whose trafficDistribution prefers it")
	gatewayPort := fs.Uint("gateway-port", uint(translate.DefaultGatewayPort), "with --role gateway: the port of the gateway's HTTP listener")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: xds translate --dir DIR [--cluster ID] [--watch]")
		fmt.Fprintln(stderr, "       xds translate --dir DIR --node-cluster ID [--role client|gateway]")
		fmt.Fprintln(stderr, "       xds translate --dir DIR --node-cluster ID --role gateway-api --gateway NS/NAME")
		fmt.Fprintln(stderr, "\nPrints, per member cluster, the MCS objects it should hold (ServiceImports,")
		fmt.Fprintln(stderr, "its ServiceExports with their status, MCS EndpointSlices, and the status eastwest")
		fmt.Fprintln(stderr, "gives its GatewayClasses, Gateways and routes) as a multi-document")
		fmt.Fprintln(stderr, "YAML stream. Problems in the input go to stderr; the exit code is 1 only when")
		fmt.Fprintln(stderr, "nothing valid could be read. With --node-cluster it prints instead the Envoy")
		fmt.Fprintln(stderr, "resources (protojson as YAML) that an xDS client of that cluster and role gets;")
		fmt.Fprintln(stderr, "resources that fail validation are reported on stderr and left out.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if code, ok := parseNoArgs(fs, args, stderr, "; the folder goes with --dir"); !ok {
		return code
	}
	if *dir == "" {
		fs.Usage()
		fmt.Fprintln(stderr, "\nxds translate: --dir is required")
		return 2
	}
	if *nodeCluster == "" {
		// The flags that shape a client's view mean nothing without one.
		var stray []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "role" || f.Name == "gateway" || f.Name == "gateway-port" || f.Name == "zone" {
				stray = append(stray, "--"+f.Name)
			}
		})
		if len(stray) > 0 {
			fmt.Fprintf(stderr, "xds translate: %s go with --node-cluster (the member whose client's Envoy resources to print)\n", strings.Join(stray, ", "))
			return 2
		}
	}
	opts := translateOptions{dir: *dir, cluster: mcs.ClusterID(*cluster), clusterSet: *clusterSet, gatewayNamespace: *gatewayNS, now: time.Now().UTC().Truncate(time.Second)}
	if *nodeCluster != "" {
		r := translate.Role(*role)
		if r != translate.RoleClient && r != translate.RoleGateway && r != translate.RoleGatewayAPI {
			fmt.Fprintf(stderr, "xds translate: --role must be client, gateway or gateway-api, not %q\n", *role)
			return 2
		}
		if (r == translate.RoleGatewayAPI) != (*gatewayName != "") || (*gatewayName != "" && strings.Count(*gatewayName, "/") != 1) {
			fmt.Fprintln(stderr, "xds translate: --role gateway-api goes with --gateway NAMESPACE/NAME, and only with it")
			return 2
		}
		if *gatewayPort == 0 || *gatewayPort > 65535 {
			fmt.Fprintf(stderr, "xds translate: --gateway-port %d is not a port\n", *gatewayPort)
			return 2
		}
		if *zone != "" && (r == translate.RoleGatewayAPI || len(validation.IsValidLabelValue(*zone)) > 0) {
			fmt.Fprintf(stderr, "xds translate: --zone %q: a zone (a label value) of a client or gateway\n", *zone)
			return 2
		}
		opts.view = &translate.View{Cluster: mcs.ClusterID(*nodeCluster), Role: r, GatewayPort: uint32(*gatewayPort), Gateway: *gatewayName, Zone: *zone}
	}
	if *watch {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return translateWatch(ctx, opts, stdout, stderr)
	}
	return translateOnce(opts, stdout, stderr)
}

type translateOptions struct {
	dir        string
	cluster    mcs.ClusterID
	clusterSet string
	// gatewayNamespace is the members' gateway namespace.
	gatewayNamespace string
	// now is the transition time given to conditions.
	now time.Time
	// view, when set, selects the Envoy output for that client view.
	view *translate.View
}

// translateOnce reads a ClusterSet folder once, merges it and prints the
// result; it is the offline twin of what serve computes.
func translateOnce(opts translateOptions, stdout, stderr io.Writer) int {
	dir := source.NewDir(opts.dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	evs, probs, err := dir.Scan()
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	for _, p := range probs {
		fmt.Fprintln(stderr, "error:", p)
	}
	off := assemble.New(assemble.Options{Store: mcs.Options{ClusterSet: opts.clusterSet, GatewayNamespace: opts.gatewayNamespace}, KeepViews: true})
	objects := 0
	for _, ev := range evs {
		if ev.Object != nil {
			objects++
		}
		if err := off.Apply(ev); err != nil {
			fmt.Fprintf(stderr, "error: member %s: %v\n", ev.Member, err)
		}
	}
	state := off.Flush().State
	if wantZoneView(off, opts) {
		state = off.Flush().State
	}
	for _, c := range state.Clusters {
		if c.Error != "" {
			fmt.Fprintf(stderr, "error: member %s is left out of the ClusterSet: %s\n", c.Member, c.Error)
		}
	}
	if len(state.Clusters) == 0 {
		fmt.Fprintf(stderr, "error: no member clusters in %s: put each cluster's YAML in %s/<cluster-id>/\n", opts.dir, opts.dir)
		return 1
	}
	if objects == 0 && len(probs) > 0 {
		fmt.Fprintln(stderr, "error: no valid object could be read")
		return 1
	}
	out, err := render(off, state, opts)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		return 1
	}
	return 0
}

// translateWatch prints the state once, then again after every change to
// the folder, until ctx ends. Problems are logged to stderr when they
// appear. It is the offline twin of serve's input loop: the same Dir
// watcher and the same incremental Store.
func translateWatch(ctx context.Context, opts translateOptions, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	off := assemble.New(assemble.Options{Store: mcs.Options{ClusterSet: opts.clusterSet, GatewayNamespace: opts.gatewayNamespace}, KeepViews: true})
	dir := source.NewDir(opts.dir, log)
	failed := false
	err := dir.Run(ctx, func(evs []event.Event, _ []source.Problem) {
		for _, ev := range evs {
			if err := off.Apply(ev); err != nil {
				log.Error("cannot apply event", "member", ev.Member, "err", err)
			}
		}
		if len(evs) == 0 {
			return
		}
		// The whole state again: the watch prints it after every change.
		state := off.Flush().State
		if wantZoneView(off, opts) {
			state = off.Flush().State
		}
		for _, c := range state.Clusters {
			if c.Error != "" {
				log.Error("member left out of the ClusterSet", "member", c.Member, "reason", c.Error)
			}
		}
		opts.now = time.Now().UTC().Truncate(time.Second)
		out, err := render(off, state, opts)
		if err != nil {
			log.Error("cannot render state", "err", err)
			failed = true
			return
		}
		fmt.Fprintf(stdout, "# ClusterSet state at %s\n", opts.now.Format(time.RFC3339))
		if _, err := stdout.Write(out); err != nil {
			failed = true
		}
	})
	if err != nil || failed {
		return 1
	}
	return 0
}

// render prints the Envoy resources of opts.view when set, else the MCS
// objects and Gateway API statuses of every member cluster.
func render(off *assemble.Assembler, state *mcs.State, opts translateOptions) ([]byte, error) {
	if opts.view == nil {
		return renderMCS(off, state, opts)
	}
	known := false
	for _, id := range state.ClusterIDs() {
		known = known || id == opts.view.Cluster
	}
	if !known {
		return nil, fmt.Errorf("cluster %q is not a member of the ClusterSet (members: %v); a client there would get nothing", opts.view.Cluster, state.ClusterIDs())
	}
	if opts.view.Role == translate.RoleGatewayAPI && !slices.ContainsFunc(off.Views(), func(v translate.View) bool { return v.String() == opts.view.String() }) {
		return nil, fmt.Errorf("cluster %s has no Gateway %s of an accepted eastwest GatewayClass with a valid listener; see its status in `xds translate --dir DIR`", opts.view.Cluster, opts.view.Gateway)
	}
	r := off.View(*opts.view)
	var b bytes.Buffer
	for _, inv := range r.Invalid {
		fmt.Fprintf(&b, "# not published (failed validation): %v\n", inv)
	}
	out, err := translate.YAML(r.Resources)
	if err != nil {
		return nil, err
	}
	b.Write(out)
	return b.Bytes(), nil
}

// renderMCS prints, per member cluster sorted by ID, the objects the merge
// says it should hold, each document preceded by a comment naming the
// cluster.
func renderMCS(off *assemble.Assembler, state *mcs.State, opts translateOptions) ([]byte, error) {
	var b bytes.Buffer
	for _, id := range state.ClusterIDs() {
		if opts.cluster != "" && id != opts.cluster {
			continue
		}
		objs := state.ObjectsFor(id, opts.now)
		member := ""
		for _, c := range state.Clusters {
			if c.ID == id {
				member = c.Member
			}
		}
		statuses := writeback.StatusObjects(off.Statuses(member), opts.now)
		fmt.Fprintf(&b, "# Cluster %s: %d ServiceImports, %d ServiceExports, %d EndpointSlices, %d Gateway API statuses\n",
			id, len(objs.ServiceImports), len(objs.ServiceExports), len(objs.EndpointSlices), len(statuses))
		var docs []any
		for _, o := range objs.ServiceImports {
			docs = append(docs, o)
		}
		for _, o := range objs.ServiceExports {
			docs = append(docs, o)
		}
		for _, o := range objs.EndpointSlices {
			docs = append(docs, o)
		}
		for _, o := range statuses {
			docs = append(docs, o)
		}
		for _, d := range docs {
			y, err := yaml.Marshal(d)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "---\n# cluster: %s\n", id)
			b.Write(y)
		}
	}
	return b.Bytes(), nil
}

// wantZoneView asks the assembler for the zone view of opts.view, as a
// client declaring its zone does of serve, and reports whether it made it.
func wantZoneView(off *assemble.Assembler, opts translateOptions) bool {
	if opts.view == nil || opts.view.Zone == "" {
		return false
	}
	made, _ := off.WantView(opts.view.String())
	return made
}
