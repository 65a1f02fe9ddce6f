package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	runtimedebug "runtime/debug"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	cpclient "sigs.k8s.io/cluster-inventory-api/client/clientset/versioned"
	cpaccess "sigs.k8s.io/cluster-inventory-api/pkg/access"

	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/debug"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
)

// serveArgs are the flags of `xds serve`, once parsed.
type serveArgs struct {
	cfg                                 controlplane.Config
	gatewayPort, tunnelPort             *uint
	writeBack, inCluster, remoteSecrets *bool
	ownKubeconfig, logLevel             *string
	operatorProperties                  *string
	// The ClusterProfile source's flags.
	inventory, clusterManager, providerFile *string
}

// serveFlags declares the flags of `xds serve`.
func serveFlags(stderr io.Writer) (*flag.FlagSet, *serveArgs) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := &serveArgs{}
	cfg := &a.cfg
	fs.StringVar(&cfg.Dir, "dir", "", "ClusterSet folder: one subfolder of Kubernetes YAML per member cluster, watched for changes")
	fs.StringVar(&cfg.KubeconfigDir, "kubeconfig-dir", "", "folder of kubeconfig files, one per Kubernetes member cluster (named after the file), watched for changes")
	fs.DurationVar(&cfg.Writer.SyncTimeout, "sync-timeout", controlplane.DefaultSyncTimeout, "how long the first push and /readyz wait for a member cluster's initial sync; after it, an unreachable cluster no longer blocks them")
	fs.StringVar(&cfg.XDSAddress, "xds-address", "127.0.0.1:18000", "address of the xDS (ADS, SotW and delta) gRPC server")
	fs.StringVar(&cfg.DebugAddress, "debug-address", "127.0.0.1:19000", "address of the debug endpoint (/debug/*, /metrics, /healthz, /readyz); keep it on loopback or behind TLS")
	fs.DurationVar(&cfg.Writer.Holdoff, "holdoff", controlplane.DefaultHoldoff, "quiet time that ends a batch of source events; the first event after a quiet holdoff is published at once, and 0 publishes every event at once")
	fs.DurationVar(&cfg.Writer.MaxDelay, "max-delay", controlplane.DefaultMaxDelay, "longest a batch may wait while events keep coming")
	gatewayPort := fs.Uint("gateway-port", 15080, "port of the east-west gateways' HTTP listener")
	fs.StringVar(&cfg.Writer.ListenAddress, "listen-address", "0.0.0.0", "the address the Envoys' listeners bind (the gateway's HTTP, tunnel and relay listeners, a Gateway's): every address, as in a pod; make run serves 127.0.0.1")
	tunnelPort := fs.Uint("tunnel-port", uint(mcs.DefaultTunnelPort), "port of the east-west gateways' tunnel listener (mutual TLS from other networks' gateways)")
	fs.StringVar(&cfg.Writer.Store.ClusterSet, "clusterset", "", "the ClusterSet's name; members whose clusterset.k8s.io property names another set are left out")
	fs.Func("member-network", "MEMBER=NETWORK[,MEMBER=NETWORK...]: the network of members without a network.eastwest.io ClusterProperty (which wins); members without either share the default network", func(v string) error {
		for _, pair := range strings.Split(v, ",") {
			member, network, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || member == "" || network == "" {
				return fmt.Errorf("%q is not MEMBER=NETWORK", pair)
			}
			if a.cfg.Writer.Store.Networks == nil {
				a.cfg.Writer.Store.Networks = map[string]string{}
			}
			a.cfg.Writer.Store.Networks[member] = network
		}
		return nil
	})
	fs.StringVar(&cfg.Writer.Store.GatewayNamespace, "gateway-namespace", mcs.DefaultGatewayNamespace, "the namespace of every member's east-west gateway Services, their tunnel Secrets and pods (where the chart installs them); Services labelled "+mcs.LabelGateway+" elsewhere are ignored and reported, so no namespace user can declare a gateway")
	fs.Func("member-gateway-namespace", "MEMBER=NAMESPACE[,...]: --gateway-namespace for one member", func(v string) error {
		for _, pair := range strings.Split(v, ",") {
			member, ns, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || member == "" || len(validation.IsDNS1123Label(ns)) > 0 {
				return fmt.Errorf("%q is not MEMBER=NAMESPACE", pair)
			}
			if a.cfg.Writer.Store.GatewayNamespaces == nil {
				a.cfg.Writer.Store.GatewayNamespaces = map[string]string{}
			}
			a.cfg.Writer.Store.GatewayNamespaces[member] = ns
		}
		return nil
	})
	fs.Func("member-property", "MEMBER=NAME=VALUE[,...]: a property the operator gives a member (a region, a jurisdiction): it wins over the member's own ClusterProperty of that name", func(v string) error {
		for _, triple := range strings.Split(v, ",") {
			member, nv, ok := strings.Cut(strings.TrimSpace(triple), "=")
			name, value, ok2 := strings.Cut(nv, "=")
			if !ok || !ok2 || member == "" || value == "" || len(validation.IsDNS1123Subdomain(name)) > 0 {
				return fmt.Errorf("%q is not MEMBER=NAME=VALUE (NAME a ClusterProperty name)", triple)
			}
			if len(value) > mcs.MaxPropertyValue {
				return fmt.Errorf("%q: the value is over %d bytes", triple, mcs.MaxPropertyValue)
			}
			if a.cfg.Writer.Store.MemberProperties == nil {
				a.cfg.Writer.Store.MemberProperties = map[string]map[string]string{}
			}
			if a.cfg.Writer.Store.MemberProperties[member] == nil {
				a.cfg.Writer.Store.MemberProperties[member] = map[string]string{}
			}
			a.cfg.Writer.Store.MemberProperties[member][name] = value
		}
		return nil
	})
	operatorProperties := fs.String("operator-properties", "", "NAME[,...]: property names only --member-property sets; a member's own ClusterProperty of such a name is ignored and reported (docs/security.md). Default: "+about.PropertyJurisdiction+" when members come from Kubernetes (--kubeconfig-dir, remote secrets), none for a --dir folder alone (its files are the operator's)")
	fs.DurationVar(&cfg.Writer.LivenessTimeout, "liveness-timeout", controlplane.DefaultLivenessTimeout, "/healthz fails when a publish has been owed for longer than this (the writer is stuck; a restart cures it)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 5*time.Second, "on SIGTERM, how long to wait for xDS streams to close")
	fs.StringVar(&cfg.XDSTLS.Cert, "xds-tls-cert", "", "serve xDS over TLS with this certificate (PEM)")
	fs.StringVar(&cfg.XDSTLS.Key, "xds-tls-key", "", "key of --xds-tls-cert (PEM)")
	fs.StringVar(&cfg.XDSTLS.ClientCA, "xds-tls-client-ca", "", "require xDS clients to present a certificate from this CA (mutual TLS) naming the node they claim (see docs/xds.md: xDS identity)")
	fs.StringVar(&cfg.TrustDomain, "xds-trust-domain", controlplane.DefaultTrustDomain, "the trust domain of identity URIs, spiffe://DOMAIN/clusterset/SET/cluster/ID/role/ROLE[/gateway/NS/NAME]: xDS clients' (with --xds-tls-client-ca) and east-west gateways' tunnel certificates")
	fs.StringVar(&cfg.TrustAnchors, "trust-anchors", "", "folder of the members' trust anchors, one <cluster ID>.pem each (a ConfigMap mounted): a member's xDS identities and tunnel certificate must come from its own anchor, and the tunnels trust the anchors alone, never a member's ca.crt (docs/security.md); read at start, where it must load, and again every 10 s (a folder that does not load then keeps the anchors in use)")
	fs.StringVar(&cfg.DebugTLS.Cert, "debug-tls-cert", "", "serve the debug endpoint over TLS with this certificate (PEM)")
	fs.StringVar(&cfg.DebugTLS.Key, "debug-tls-key", "", "key of --debug-tls-cert (PEM)")
	fs.StringVar(&cfg.DebugTLS.ClientCA, "debug-tls-client-ca", "", "require debug clients to present a certificate from this CA; its identity then decides: spiffe://DOMAIN/clusterset/SET/role/operator reads everything, .../role/metrics /metrics alone, any other /healthz and /readyz alone")
	fs.BoolVar(&cfg.ProvisionGateways, "provision-gateways", true, "with --write-back: deploy the Envoys of every Gateway of an eastwest GatewayClass in its member (Deployment, Service, ServiceAccount, PodDisruptionBudget, bootstrap, identity: GEP-1762, tuned by GatewayParameters); false: they are deployed by hand (docs/gateway-api.md)")
	writeBack := fs.Bool("write-back", true, "with --kubeconfig-dir: be the ClusterSet's MCS controller (write ServiceImports, EndpointSlices and ServiceExport conditions to the members), under leader election (the Lease in --namespace) when --kubeconfig or --in-cluster is set")
	ownKubeconfig := fs.String("kubeconfig", "", "kubeconfig of the control plane's own cluster, which holds the leader election Lease and the remote secrets; without it this replica always writes (run one replica)")
	inCluster := fs.Bool("in-cluster", false, "the control plane's own cluster is the one it runs in (service account credentials), instead of --kubeconfig")
	remoteSecrets := fs.Bool("remote-secrets", true, "with --kubeconfig/--in-cluster: read member clusters from Secrets labelled eastwest.io/cluster in --namespace")
	inventory := fs.String("inventory-namespace", "", "with --kubeconfig/--in-cluster: read member clusters from the ClusterProfiles (multicluster.x-k8s.io/v1alpha1, KEP-4322) in this namespace of the control plane's own cluster, reached with the credentials of the exec plugins of --clusterprofile-provider-file")
	clusterManager := fs.String("cluster-manager", "", "with --inventory-namespace: read only the ClusterProfiles whose x-k8s.io/cluster-manager label is this")
	providerFile := fs.String("clusterprofile-provider-file", "", "with --inventory-namespace: the access providers file (JSON, sigs.k8s.io/cluster-inventory-api's pkg/access): for each access provider a ClusterProfile may name, the exec credential plugin that gives its credentials")
	fs.StringVar(&cfg.Election.Namespace, "namespace", "eastwest-system", "the control plane's namespace: the Lease and the remote secrets live there")
	fs.StringVar(&cfg.Election.Name, "lease-name", "eastwest-writeback", "name of the leader election Lease")
	fs.DurationVar(&cfg.Election.LeaseDuration, "lease-duration", 15*time.Second, "how long a dead leader blocks the other replicas")
	fs.DurationVar(&cfg.StaleAfter, "stale-after", 0, "drain an unreachable member cluster's last known state after this long (0: keep it until the cluster returns or is removed, so an outage never drains traffic)")
	fs.DurationVar(&cfg.Resync, "resync", 5*time.Minute, "how often the write-back repairs every member cluster in full")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: xds serve (--dir DIR | --kubeconfig-dir DIR) [flags]")
		fmt.Fprintln(stderr, "\nServes the ClusterSet in DIR over xDS to east-west Envoy gateways and proxyless")
		fmt.Fprintln(stderr, "gRPC clients, and its state on the debug endpoint. See docs/xds.md for the node contract.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	a.operatorProperties = operatorProperties
	a.inventory, a.clusterManager, a.providerFile = inventory, clusterManager, providerFile
	a.gatewayPort, a.tunnelPort, a.writeBack, a.ownKubeconfig, a.inCluster, a.remoteSecrets, a.logLevel = gatewayPort, tunnelPort, writeBack, ownKubeconfig, inCluster, remoteSecrets, logLevel
	return fs, a
}

func runServe(args []string, _, stderr io.Writer) int {
	fs, a := serveFlags(stderr)
	if code, ok := parseNoArgs(fs, args, stderr, "; a folder goes with --dir"); !ok {
		return code
	}
	setGCPercent()
	cfg := a.cfg
	gatewayPort, tunnelPort, writeBack, ownKubeconfig, inCluster, remoteSecrets, logLevel := a.gatewayPort, a.tunnelPort, a.writeBack, a.ownKubeconfig, a.inCluster, a.remoteSecrets, a.logLevel
	if cfg.Dir == "" && cfg.KubeconfigDir == "" && *ownKubeconfig == "" && !*inCluster {
		fs.Usage()
		fmt.Fprintln(stderr, "\nxds serve: say where the ClusterSet is: --dir (a YAML folder), --kubeconfig-dir, --kubeconfig or --in-cluster")
		return 2
	}
	if errs := validation.IsDNS1123Label(cfg.Writer.Store.GatewayNamespace); len(errs) > 0 {
		fmt.Fprintf(stderr, "xds serve: --gateway-namespace %q is not a namespace: %s\n", cfg.Writer.Store.GatewayNamespace, errs[0])
		return 2
	}
	// A folder that does not exist is a typo, not a ClusterSet that is
	// empty for now: serving nothing and logging every second helps no one.
	for _, d := range []struct{ flag, path string }{{"--dir", cfg.Dir}, {"--kubeconfig-dir", cfg.KubeconfigDir}} {
		if d.path == "" {
			continue
		}
		if fi, err := os.Stat(d.path); err != nil || !fi.IsDir() {
			why := "not a folder"
			if err != nil {
				why = err.Error()
			}
			fmt.Fprintf(stderr, "xds serve: %s %s: %s\n", d.flag, d.path, why)
			return 2
		}
	}
	props, err := operatorProperties(fs, *a.operatorProperties, cfg.KubeconfigDir != "" || (*ownKubeconfig != "" || *inCluster) && (*remoteSecrets || *a.inventory != ""))
	if err != nil {
		fmt.Fprintf(stderr, "xds serve: --operator-properties: %v\n", err)
		return 2
	}
	cfg.Writer.Store.OperatorProperties = props
	if cfg.Writer.Holdoff < 0 || cfg.Writer.MaxDelay < 0 {
		fmt.Fprintf(stderr, "xds serve: --holdoff %v and --max-delay %v cannot be negative (--holdoff 0 publishes every change at once)\n", cfg.Writer.Holdoff, cfg.Writer.MaxDelay)
		return 2
	}
	if cfg.Writer.Holdoff > 0 && cfg.Writer.MaxDelay < cfg.Writer.Holdoff {
		fmt.Fprintf(stderr, "xds serve: --max-delay %v is shorter than --holdoff %v: a batch could not wait for the quiet it waits for\n", cfg.Writer.MaxDelay, cfg.Writer.Holdoff)
		return 2
	}
	if *gatewayPort == 0 || *gatewayPort > 65535 {
		fmt.Fprintf(stderr, "xds serve: --gateway-port %d is not a port\n", *gatewayPort)
		return 2
	}
	cfg.Writer.GatewayPort = uint32(*gatewayPort)
	if *tunnelPort == 0 || *tunnelPort > 65535 {
		fmt.Fprintf(stderr, "xds serve: --tunnel-port %d is not a port\n", *tunnelPort)
		return 2
	}
	cfg.Writer.TunnelPort = uint32(*tunnelPort)
	if _, err := netip.ParseAddr(cfg.Writer.ListenAddress); err != nil {
		fmt.Fprintf(stderr, "xds serve: --listen-address %q is not an IP address\n", cfg.Writer.ListenAddress)
		return 2
	}
	if *tunnelPort == *gatewayPort {
		fmt.Fprintf(stderr, "xds serve: --tunnel-port and --gateway-port are both %d: a gateway listens on each, so they must differ\n", *tunnelPort)
		return 2
	}
	if *ownKubeconfig != "" || *inCluster {
		var rc *rest.Config
		var err error
		if *inCluster {
			rc, err = rest.InClusterConfig()
		} else {
			rc, err = clientcmd.BuildConfigFromFlags("", *ownKubeconfig)
		}
		if err != nil {
			fmt.Fprintf(stderr, "xds serve: the control plane's own cluster: %v\n", err)
			return 2
		}
		cfg.Election.Config = rc
		if *remoteSecrets {
			client, err := kubernetes.NewForConfig(rc)
			if err != nil {
				fmt.Fprintf(stderr, "xds serve: %v\n", err)
				return 2
			}
			cfg.RemoteSecrets = &source.Secrets{Client: client, Namespace: cfg.Election.Namespace}
		}
		if *a.inventory != "" {
			client, err := cpclient.NewForConfig(rc)
			if err != nil {
				fmt.Fprintf(stderr, "xds serve: %v\n", err)
				return 2
			}
			cfg.Profiles = &source.Profiles{Client: client, Namespace: *a.inventory, ClusterManager: *a.clusterManager, ProviderFile: *a.providerFile}
		}
	}
	if code, ok := checkInventoryFlags(*a.inventory, *a.clusterManager, *a.providerFile, *ownKubeconfig != "" || *inCluster, stderr); !ok {
		return code
	}
	cfg.WriteBack = *writeBack && (cfg.KubeconfigDir != "" || cfg.RemoteSecrets != nil || cfg.Profiles != nil)
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "xds serve: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// client-go logs through klog: its lines go through the same handler,
	// in the same format, not interleaved in klog's own.
	klog.SetSlogLogger(log)
	for _, w := range exposureWarnings(cfg) {
		log.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Version, cfg.Revision = version, buildRevision()
	app, err := controlplane.NewApp(cfg, log, debug.ForApp)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := app.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// exposureWarnings says which listeners serve in plaintext beyond
// loopback: anyone who reaches an xDS port without TLS can claim any node
// and read its configuration, and a debug endpoint without TLS shows
// every member's state (never secrets). Serving so is allowed (a lab, a
// network policy in front) but never silently.
func exposureWarnings(cfg controlplane.Config) []string {
	var out []string
	for _, l := range []struct {
		what, flag, addr string
		tls              bool
		risk             string
	}{
		{"xDS", "--xds-address", cfg.XDSAddress, cfg.XDSTLS.Cert != "", "any client that reaches it can claim any node and get its configuration (--xds-tls-cert, --xds-tls-key, --xds-tls-client-ca)"},
		{"the debug endpoint", "--debug-address", cfg.DebugAddress, cfg.DebugTLS.Cert != "", "anyone who reaches it reads the ClusterSet's state and /metrics (--debug-tls-cert, --debug-tls-key, --debug-tls-client-ca)"},
	} {
		if l.addr == "" || l.tls || loopback(l.addr) {
			continue
		}
		out = append(out, fmt.Sprintf("%s is served in plaintext on %s %s, beyond loopback: %s", l.what, l.flag, l.addr, l.risk))
	}
	return out
}

// loopback reports whether a listen address is on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// servingGCPercent is serve's GOGC unless the environment sets one. The
// control plane's heap is mostly long-lived (informer caches, marshalled
// resources, every client's subscription) and it allocates little between
// changes, so collecting at half the live heap instead of all of it costs
// a few more collections a minute and keeps the heap, and so the RSS a
// pod is sized by, a quarter smaller (docs/performance.md). GOMEMLIMIT is
// honoured as ever (the chart sets it from the container's memory limit).
const servingGCPercent = 50

func setGCPercent() {
	if os.Getenv("GOGC") == "" {
		runtimedebug.SetGCPercent(servingGCPercent)
	}
}

// operatorProperties are the property names only the operator sets: the
// flag's list when given (empty: none), else jurisdiction.eastwest.io
// when members come from Kubernetes, where member admins write their
// ClusterProperties. A --dir folder is the operator's own files.
func operatorProperties(fs *flag.FlagSet, v string, kubeMembers bool) ([]string, error) {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "operator-properties" })
	if !set {
		if kubeMembers {
			return []string{about.PropertyJurisdiction}, nil
		}
		return nil, nil
	}
	var out []string
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("%q is not a ClusterProperty name: %s", name, errs[0])
		}
		out = append(out, name)
	}
	return out, nil
}

// checkInventoryFlags refuses ClusterProfile flags that cannot work: an
// inventory without the own cluster it lives in or without a provider
// file (a profile names providers; the file says which plugin each is),
// or the other flags without an inventory.
func checkInventoryFlags(inventory, clusterManager, providerFile string, ownCluster bool, stderr io.Writer) (int, bool) {
	switch {
	case inventory == "" && (clusterManager != "" || providerFile != ""):
		fmt.Fprintln(stderr, "xds serve: --cluster-manager and --clusterprofile-provider-file go with --inventory-namespace")
	case inventory != "" && !ownCluster:
		fmt.Fprintln(stderr, "xds serve: --inventory-namespace reads ClusterProfiles from the control plane's own cluster: give --kubeconfig or --in-cluster")
	case inventory != "" && providerFile == "":
		fmt.Fprintln(stderr, "xds serve: --inventory-namespace needs --clusterprofile-provider-file: which credential plugin reaches each access provider")
	case inventory != "" && len(validation.IsDNS1123Label(inventory)) > 0:
		fmt.Fprintf(stderr, "xds serve: --inventory-namespace %q is not a namespace\n", inventory)
	case providerFile != "":
		if _, err := cpaccess.NewFromFile(providerFile); err != nil {
			fmt.Fprintf(stderr, "xds serve: --clusterprofile-provider-file: %v\n", err)
			return 2, false
		}
		return 0, true
	default:
		return 0, true
	}
	return 2, false
}
