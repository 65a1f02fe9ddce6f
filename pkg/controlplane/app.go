package controlplane

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/eastwest-dev/eastwest/internal/kubeclient"
	"github.com/eastwest-dev/eastwest/internal/ratelog"
	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/metrics"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/pkg/trust"
	"github.com/eastwest-dev/eastwest/pkg/writeback"
)

// Config is everything `xds serve` is configured with.
type Config struct {
	// Version and Revision name the running build (eastwest_build_info;
	// empty: "dev" and "unknown").
	Version, Revision string
	// Dir is the ClusterSet folder (DIR/<cluster>/*.yaml).
	Dir string
	// KubeconfigDir holds one kubeconfig file per Kubernetes member
	// cluster, named after the member.
	KubeconfigDir string
	// StaleAfter drains an unreachable member's last known state after this
	// long; zero keeps it until the member returns or is removed.
	StaleAfter time.Duration
	// RemoteSecrets, when set, reads member clusters from Secrets
	// labelled source.LabelCluster in the control plane's own cluster.
	RemoteSecrets *source.Secrets
	// Profiles, when set, reads member clusters from the fleet's
	// inventory: ClusterProfiles in the control plane's own cluster.
	Profiles     *source.Profiles
	XDSAddress   string
	DebugAddress string
	Writer       WriterOptions
	XDSTLS       TLSFiles
	// ProvisionGateways makes the write-back leader deploy the Envoys of
	// Gateway API Gateways of eastwest's classes (GEP-1762; xds serve
	// --provision-gateways, on by default); without it they are deployed
	// by hand.
	ProvisionGateways bool
	// TrustDomain is the trust domain of the xDS client identities
	// required with XDSTLS.ClientCA (see IdentityPolicy).
	TrustDomain string
	// TrustAnchors is the operator's folder of trust anchors, one
	// <cluster ID>.pem per member (package trust): xDS identities and
	// tunnel certificates of a member must come from its own anchor, and
	// the tunnels trust the anchors alone. Empty: one CA for all
	// (XDSTLS.ClientCA, and the members' tunnel Secrets' ca.crt). Read at
	// start (it must load) and again every AnchorsPoll.
	TrustAnchors string
	// AnchorsPoll is how often TrustAnchors is read again (0: AnchorsPoll).
	AnchorsPoll time.Duration
	DebugTLS    TLSFiles
	// DrainTimeout bounds how long shutdown waits for streams to end.
	DrainTimeout time.Duration
	// WriteBack makes this replica the ClusterSet's MCS controller for
	// the Kubernetes members (ServiceImports, EndpointSlices, export
	// conditions), under Election when it names a Lease cluster.
	WriteBack bool
	Election  writeback.Election
	// Resync is how often the write-back repairs every member in full.
	Resync time.Duration
}

// App is a running control plane: sources, the Writer, the xDS server
// and the debug endpoint.
type App struct {
	cfg Config
	log *slog.Logger
	// warn logs what clients can repeat at will, rate-limited.
	warn    *ratelog.Logger
	Metrics *metrics.Metrics
	Cache   *cache.Cache
	Tracker *cache.Tracker
	Writer  *Writer
	xds     *XDSServer
	debug   *http.Server
	dir     *source.Dir
	members *source.Members
	wb      *writeback.Writeback
	// ledger is the relay ledger, read by every replica that has the
	// control plane's own cluster (nil without one).
	ledger *writeback.RelayLedger
	// election is the write-back's leadership as this replica knows it.
	election writeback.Recorder

	xdsListener, debugListener net.Listener
	// anchors are the trust anchors in use (--trust-anchors), read again
	// when their folder changes (watchAnchors).
	anchors atomic.Pointer[trust.Anchors]
	// anchoredTLS is the xDS handshake's config for those anchors, made
	// from xdsTLSBase.
	anchoredTLS atomic.Pointer[tls.Config]
	xdsTLSBase  *tls.Config
}

// setAnchors puts trust anchors in use for the identity check and, with
// xDS over TLS, the handshake's client CAs.
func (a *App) setAnchors(t *trust.Anchors) {
	a.anchors.Store(t)
	if a.xdsTLSBase == nil || t == nil {
		return
	}
	c := a.xdsTLSBase.Clone()
	if c.ClientCAs != nil {
		c.ClientCAs = c.ClientCAs.Clone()
	} else {
		c.ClientCAs = x509.NewCertPool()
	}
	for _, m := range t.Members() {
		for _, cert := range t.Certificates(m) {
			c.ClientCAs.AddCert(cert)
		}
	}
	c.ClientAuth = tls.RequireAndVerifyClientCert
	a.anchoredTLS.Store(c)
}

// NewApp builds the control plane and binds its listeners (so that a bad
// address fails here, and :0 gets its port before Run).
func NewApp(cfg Config, log *slog.Logger, debugHandler func(*App) http.Handler) (*App, error) {
	if cfg.Dir == "" && cfg.KubeconfigDir == "" && cfg.RemoteSecrets == nil && cfg.Profiles == nil {
		return nil, errors.New("a source is required: --dir, --kubeconfig-dir, remote secrets and/or ClusterProfiles (--kubeconfig)")
	}
	a := &App{cfg: cfg, log: log, warn: ratelog.New(log, 10*time.Second, 5), Metrics: metrics.New()}
	a.Metrics.BuildInfo(cmp.Or(cfg.Version, "dev"), cmp.Or(cfg.Revision, "unknown"))
	var anchors *trust.Anchors
	if cfg.TrustAnchors != "" {
		var err error
		if anchors, err = trust.Load(cfg.TrustAnchors); err != nil {
			return nil, err
		}
		if cfg.XDSTLS.Cert == "" {
			return nil, errors.New("--trust-anchors needs xDS over TLS (--xds-tls-cert, --xds-tls-key): the anchors check xDS clients' certificates")
		}
	}
	xdsTLS, err := cfg.XDSTLS.Config()
	if err != nil {
		return nil, fmt.Errorf("xDS TLS: %w", err)
	}
	if anchors != nil {
		// Client chains verify against every member's current anchors
		// (and the client CA, if any); the identity's own member is
		// checked next (IdentityPolicy.Anchors). The handshake's config is
		// made once per set of anchors (setAnchors), not per handshake.
		a.xdsTLSBase = xdsTLS.Clone()
		xdsTLS.ClientAuth = tls.RequireAndVerifyClientCert
		xdsTLS.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return a.anchoredTLS.Load(), nil }
	}
	debugTLS, err := cfg.DebugTLS.Config()
	if err != nil {
		return nil, fmt.Errorf("debug TLS: %w", err)
	}
	a.setAnchors(anchors)
	a.Cache = cache.New(NodeView)
	cfg.Writer.TrustDomain = cfg.TrustDomain
	cfg.Writer.Anchors = anchors
	a.Writer = NewWriter(cfg.Writer, a.Cache, a.Metrics, log)
	a.Tracker = cache.NewTracker(a.Cache, a.describeNode, a.Metrics)
	a.Metrics.ClientStates(a.Tracker.Clients)
	policy := IdentityPolicy{Required: cfg.XDSTLS.ClientCA != "" || anchors != nil, TrustDomain: cfg.TrustDomain, ClusterSet: cfg.Writer.Store.ClusterSet}
	if anchors != nil {
		policy.Anchors = a.anchors.Load
	}
	a.Tracker.Authenticate(policy.Authenticate, a.warn)
	a.xds = NewXDSServer(a.Cache, a.Tracker, xdsTLS)
	if cfg.Dir != "" {
		a.dir = source.NewDir(cfg.Dir, log)
		a.Writer.AddSource(a.sourceName())
	}
	if cfg.KubeconfigDir != "" || cfg.RemoteSecrets != nil || cfg.Profiles != nil {
		a.members = source.NewMembers(cfg.KubeconfigDir, log, a.Writer)
		a.members.StaleAfter = cfg.StaleAfter
		if cfg.RemoteSecrets != nil {
			a.members.WatchSecrets(cfg.RemoteSecrets)
		}
		if cfg.Profiles != nil {
			a.members.WatchProfiles(*cfg.Profiles)
		}
		if cfg.WriteBack {
			a.wb = writeback.New(a.members, log)
			a.members.OnSynced(a.wb.MemberSynced)
			a.wb.OnMemberFailed(a.Metrics.WriteBackMemberFailed)
			a.Metrics.WriteBack(a.wb.Pending, a.wb.Writes, func() time.Duration { return a.wb.Lag(time.Now()) })
			a.Metrics.Election(func() bool { return a.election.Status().Leading }, func() bool { return a.election.Status().Error != "" })
			a.Writer.OnPublish(a.wb.Changed)
			a.Writer.OnGatewayAPI(a.wb.GatewayAPIChanged)
			a.wb.SetProvisioning(writeback.ProvisionOptions{Enabled: cfg.ProvisionGateways, TrustDomain: cfg.TrustDomain})
			if e := cfg.Election; e.Config != nil {
				// Replicas share relay ports through the ledger in the
				// control plane's own cluster (writeback/relayledger.go).
				client, err := kubeclient.Core(e.Config)
				if err != nil {
					return nil, fmt.Errorf("the control plane's cluster: %w", err)
				}
				a.ledger = writeback.NewRelayLedger(client, e.Namespace, e.Name+"-relay-ports", log)
				a.wb.SetLedger(a.ledger)
				a.Writer.AddSource(RelayLedgerSource)
			}
		}
	}

	if a.xdsListener, err = net.Listen("tcp", cfg.XDSAddress); err != nil {
		return nil, fmt.Errorf("xDS address: %w", err)
	}
	if a.debugListener, err = net.Listen("tcp", cfg.DebugAddress); err != nil {
		_ = a.xdsListener.Close()
		return nil, fmt.Errorf("debug address: %w", err)
	}
	handler := debugHandler(a)
	if cfg.DebugTLS.ClientCA != "" {
		handler = IdentityPolicy{TrustDomain: cfg.TrustDomain, ClusterSet: cfg.Writer.Store.ClusterSet}.DebugAccess(handler)
	}
	a.debug = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, TLSConfig: debugTLS}
	return a, nil
}

// AnchorsPoll is how often the trust anchors' folder is read again (a
// ConfigMap mounted as a folder changes by a symlink swap, which a poll
// sees whatever the filesystem).
const AnchorsPoll = 10 * time.Second

// watchAnchors reads the trust anchors again every poll and, when they
// changed, serves by the new ones: the xDS handshake's client CAs, the
// identity check and the tunnels (through the Writer). Anchors that do not
// load are logged and the ones in use stay.
func (a *App) watchAnchors(ctx context.Context, poll time.Duration) {
	t := time.NewTicker(poll)
	defer t.Stop()
	failed := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next, err := trust.Load(a.cfg.TrustAnchors)
		if err != nil {
			if err.Error() != failed {
				a.log.Error("trust anchors not reloaded: the ones in use stay", "err", err)
				failed = err.Error()
			}
			continue
		}
		failed = ""
		if cur := a.anchors.Load(); bytes.Equal(cur.Bundle(), next.Bundle()) && slices.Equal(cur.Members(), next.Members()) {
			continue
		}
		a.setAnchors(next)
		a.Writer.SetAnchors(next)
		a.log.Info("trust anchors reloaded", "members", next.Members())
	}
}

func (a *App) sourceName() string { return "dir:" + a.cfg.Dir }

// XDSAddr is the address the xDS server listens on.
func (a *App) XDSAddr() string { return a.xdsListener.Addr().String() }

// DebugAddr is the address the debug endpoint listens on.
func (a *App) DebugAddr() string { return a.debugListener.Addr().String() }

// describeNode is the Tracker's view of a node: its declared cluster and
// role, its view, and why it gets nothing if it does not. A node of a
// cluster that is not (yet) a member waits: it is served as soon as the
// cluster joins.
func (a *App) describeNode(n *corev3.Node) (string, string, string, error) {
	v, err := ParseNode(n)
	if err != nil {
		return n.GetCluster(), "", "", err
	}
	c := v.Cluster
	if !a.Writer.Ready() {
		return string(c), string(v.Role), v.String(), errors.New("the control plane has not finished its initial sync; the client is served once it has")
	}
	known := false
	snap := a.Writer.Snapshot()
	members := snap.State.ClusterIDs()
	for _, id := range members {
		known = known || id == c
	}
	if !known {
		err = fmt.Errorf("cluster %q is not a member of the ClusterSet (members: %v); the client gets nothing until it joins", c, members)
		return string(c), string(v.Role), v.String(), err
	}
	if v.Role == translate.RoleGatewayAPI && !slices.ContainsFunc(snap.Views, func(sv translate.View) bool { return sv.String() == v.String() }) {
		err = fmt.Errorf("cluster %s has no Gateway %s of an accepted eastwest GatewayClass with a valid listener (yet); the Envoy gets nothing until it has", c, v.Gateway)
		return string(c), string(v.Role), v.String(), err
	}
	return string(c), string(v.Role), v.String(), nil
}

// Run serves until ctx ends, then shuts down: the debug endpoint first,
// then the xDS server, draining streams for up to DrainTimeout.
func (a *App) Run(ctx context.Context) error {
	srcCtx, stopSources := context.WithCancel(context.Background())
	defer stopSources()
	// The write-back's leadership ends first at shutdown: its Lease is
	// released before the xDS streams drain, so the next replica writes
	// while this one drains (issue 29: a failover under churn waited out
	// the drain timeout).
	leadCtx, stopLeading := context.WithCancel(srcCtx)
	defer stopLeading()
	writerDone, leadDone := make(chan struct{}), make(chan struct{})
	if a.members != nil {
		go a.exportConnections(srcCtx)
		// Every configured member is a source before the first publish.
		a.members.Scan(srcCtx)
		if a.cfg.RemoteSecrets != nil {
			a.members.ScanSecrets(srcCtx)
		}
		if a.cfg.Profiles != nil {
			a.members.ScanProfiles(srcCtx)
		}
		go a.members.Run(srcCtx)
	}
	if a.wb != nil {
		resync := a.cfg.Resync
		if resync <= 0 {
			resync = 5 * time.Minute
		}
		go func() {
			defer close(leadDone)
			err := writeback.Lead(leadCtx, a.cfg.Election, a.log, &a.election, func(ctx context.Context) { a.wb.Run(ctx, resync) })
			if err != nil {
				a.log.Error("leader election failed: not writing to member clusters", "err", err)
			}
		}()
	} else {
		close(leadDone)
	}
	if a.ledger != nil {
		go a.ledger.Watch(srcCtx, a.Writer.SetRelayPins)
	}
	go func() { a.Writer.Run(srcCtx); close(writerDone) }()
	if a.cfg.TrustAnchors != "" {
		poll := a.cfg.AnchorsPoll
		if poll <= 0 {
			poll = AnchorsPoll
		}
		go a.watchAnchors(srcCtx, poll)
	}
	if a.dir != nil {
		go func() { _ = a.dir.Run(srcCtx, a.Writer.Sink(a.sourceName())) }()
	}

	errc := make(chan error, 2)
	go func() { errc <- a.xds.Serve(a.xdsListener) }()
	go func() {
		var err error
		if a.debug.TLSConfig != nil {
			err = a.debug.ServeTLS(a.debugListener, "", "")
		} else {
			err = a.debug.Serve(a.debugListener)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	a.log.Info("serving", "xds", a.XDSAddr(), "debug", a.DebugAddr(), "dir", a.cfg.Dir, "kubeconfigDir", a.cfg.KubeconfigDir)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	a.log.Info("shutting down", "drainTimeout", a.cfg.DrainTimeout)
	// Every step is bounded, and so is the whole: whatever is stuck (a
	// stream, a source, the writer), the process ends within the drain
	// timeout and a small margin.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout)
	defer cancel()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		go func() { _ = a.debug.Shutdown(shutdownCtx) }()
		// A leader releases its Lease as it stops: the next replica
		// writes at once instead of a lease duration later (a rolling
		// update would otherwise leave the members unwritten for 15 s).
		stopLeading()
		<-leadDone
		a.xds.Shutdown(a.cfg.DrainTimeout)
		stopSources()
		<-writerDone
	}()
	select {
	case <-finished:
	case <-time.After(a.cfg.DrainTimeout + ShutdownMargin):
		a.log.Error("shutdown did not finish within the drain timeout; exiting anyway", "drainTimeout", a.cfg.DrainTimeout)
		_ = a.debug.Close()
	}
	return err
}

// ShutdownMargin is how long past the drain timeout Run waits for the
// rest of the shutdown before it returns regardless.
const ShutdownMargin = 2 * time.Second

// exportConnections keeps the members' connection metrics current.
func (a *App) exportConnections(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var cs []metrics.Connection
		for _, s := range a.members.Statuses() {
			cs = append(cs, metrics.Connection{Member: s.Member, State: s.State, Failures: s.Failures})
		}
		a.Metrics.Connections(cs)
	}
}

// Leading reports whether this replica writes to member clusters.
func (a *App) Leading() bool { return a.election.Status().Leading }

// WriteBackStatus is the write-back as /debug/writeback and `xds status`
// show it.
type WriteBackStatus struct {
	// Enabled is false when this control plane writes nothing to its
	// members (a YAML folder, or --write-back=false).
	Enabled  bool                     `json:"enabled"`
	Election writeback.ElectionStatus `json:"election"`
	// Pending are the services whose objects are still to write; Writes
	// the writes made so far (MCS objects and Gateway API statuses);
	// Passes the times the write-back caught up: every member (but those
	// backing off) written all it was owed, after a change or a resync.
	Pending int   `json:"pending"`
	Writes  int64 `json:"writes"`
	Passes  int64 `json:"passes"`
	// LagSeconds is how long the oldest change not yet written to every
	// member has waited (0: caught up).
	LagSeconds float64 `json:"lagSeconds"`
	// Retrying are the members whose last pass failed, each tried again
	// alone after its backoff.
	Retrying []writeback.MemberRetry `json:"retrying,omitempty"`
	// Problem is why no replica writes, when it has lasted
	// (WriteBackProblem).
	Problem string `json:"problem,omitempty"`
}

// WriteBack returns the write-back's status.
func (a *App) WriteBack() WriteBackStatus {
	if a.wb == nil {
		return WriteBackStatus{}
	}
	return WriteBackStatus{Enabled: true, Election: a.election.Status(), Pending: a.wb.Pending(), Writes: a.wb.Writes(), Passes: a.wb.Passes(), LagSeconds: a.wb.Lag(time.Now()).Seconds(), Retrying: a.wb.Retries(), Problem: a.WriteBackProblem()}
}

// electionGrace is how long the Lease may fail before the replica says it
// is not ready: two lease durations (30 s by default). A few failed
// renewals (an apiserver restart) are not a problem; a Lease that cannot
// be used at all (its namespace missing, no RBAC) means that no replica
// writes to the members.
func (a *App) electionGrace() time.Duration {
	if d := a.cfg.Election.LeaseDuration; d > 0 {
		return 2 * d
	}
	return 30 * time.Second
}

// WriteBackProblem says why no replica writes to member clusters, when the
// Lease has failed for longer than electionGrace; "" otherwise. /readyz
// fails with it: a control plane that cannot be the ClusterSet's MCS
// controller is not ready (xDS clients keep their streams and config).
func (a *App) WriteBackProblem() string {
	if a.wb == nil {
		return ""
	}
	st := a.election.Status()
	if st.Error == "" || time.Since(st.FailingSince) < a.electionGrace() {
		return ""
	}
	return fmt.Sprintf("write-back: leader election failing for %v on Lease %s: %s", time.Since(st.FailingSince).Round(time.Second), st.Lease, st.Error)
}

// MemberStatuses returns the connection status of every Kubernetes member.
func (a *App) MemberStatuses() []source.ClusterStatus {
	if a.members == nil {
		return nil
	}
	return a.members.Statuses()
}
