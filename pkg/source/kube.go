package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	cpv1a1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"

	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// The states of a member cluster's connection.
const (
	StateConnecting = "connecting"
	StateSynced     = "synced"
	StateFailing    = "failing"
	StateStopped    = "stopped"
)

// ClusterStatus is where one Kubernetes member cluster stands.
type ClusterStatus struct {
	Member string `json:"member"`
	State  string `json:"state"`
	// Generation counts the member's connections (Conn): it grows each
	// time the member's access (kubeconfig, credentials) changes.
	Generation int64 `json:"generation"`
	// Origin is where the member's access comes from: dir (the
	// kubeconfig folder), secrets (remote Secrets) or profiles
	// (ClusterProfiles).
	Origin string `json:"origin,omitempty"`
	// AccessError says why the member's access, as its origin gives it
	// now, cannot be used: the last good connection stays in use.
	AccessError string `json:"accessError,omitempty"`
	// ExportVersion is the ServiceExport version read (v1beta1 when the
	// cluster serves it).
	ExportVersion string    `json:"exportVersion,omitempty"`
	LastError     string    `json:"lastError,omitempty"`
	Failures      int       `json:"failures"`
	Since         time.Time `json:"since"`
	SyncedAt      time.Time `json:"syncedAt,omitzero"`
}

// KubeCluster reads one member cluster from its apiserver with informers
// (Namespaces, Services, EndpointSlices, ServiceExports and, when its CRD
// exists, ClusterProperties) and reports them as events.
//
// Its first batch, sent once every informer has synced, is the cluster's
// whole state; after a reconnection the next batch brings the Store to
// the cluster's state again (upserts and deletes). While the cluster is
// unreachable nothing is sent, so the Store keeps the last known state: an
// outage does not drain traffic. Remove ends it with OpLeave.
type KubeCluster struct {
	member string
	conn   *Conn
	log    *slog.Logger
	sink   func([]event.Event, []Problem)
	// StaleAfter, when positive, drains the cluster's last known state
	// once it has been unreachable that long; zero keeps it forever.
	StaleAfter time.Duration
	// onSynced, when set, is called after each (re)sync was sent.
	onSynced func()

	mu     sync.Mutex
	status ClusterStatus

	// gate orders what reaches the sink: every send happens under it,
	// and once closed nothing more is sent, so that a successor (the
	// member reconnected with new credentials) or a removal never races
	// a send of this run. sent and drained are the gate's too.
	gate   sync.Mutex
	closed bool
	// sent maps what the Store was last told to the object's resource
	// version, to diff a resync.
	sent    map[kubeKey]string
	drained bool
	// synced is set once a sync was sent; profile is the member's
	// ClusterProfile as the inventory gave it (nil: none), sent with
	// every sync and on its own when it changes after.
	synced  bool
	profile *cpv1a1.ClusterProfile
}

// setProfile gives the member its ClusterProfile (trimmed; nil: none),
// sent at once when it changed and the member has synced.
func (k *KubeCluster) setProfile(p *cpv1a1.ClusterProfile) {
	k.gate.Lock()
	defer k.gate.Unlock()
	if profileEqual(k.profile, p) {
		return
	}
	old := k.profile
	k.profile = p
	if k.closed || !k.synced {
		return
	}
	ev := event.Event{Member: k.member, Op: event.OpUpsert, Object: p}
	if p == nil {
		ev = event.Event{Member: k.member, Op: event.OpDelete, Object: old}
	}
	k.sink(k.record([]event.Event{ev}), nil)
}

type kubeKey struct {
	kind      schema.GroupKind
	namespace string
	name      string
}

// NewKubeCluster returns the source of one member cluster through its
// connection; it does nothing until Run.
func NewKubeCluster(conn *Conn, log *slog.Logger, sink func([]event.Event, []Problem)) *KubeCluster {
	return &KubeCluster{
		member: conn.Member, conn: conn, log: log.With("member", conn.Member), sink: sink,
		status: ClusterStatus{Member: conn.Member, State: StateConnecting, Since: time.Now(), Generation: conn.Generation, Origin: conn.Origin},
		sent:   map[kubeKey]string{},
	}
}

// deliver records and sends events, unless the cluster was closed.
func (k *KubeCluster) deliver(evs []event.Event) {
	k.gate.Lock()
	defer k.gate.Unlock()
	if k.closed {
		return
	}
	if evs = k.record(evs); len(evs) > 0 {
		k.sink(evs, nil)
	}
}

// close stops every later send (waiting for one in progress) and returns
// what the Store was told, for the cluster's successor to diff its first
// sync with: objects deleted while the member reconnected are then
// deleted too.
func (k *KubeCluster) close() map[kubeKey]string {
	k.gate.Lock()
	defer k.gate.Unlock()
	k.closed = true
	return k.sent
}

// Status returns the cluster's connection status.
func (k *KubeCluster) Status() ClusterStatus {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.status
}

func (k *KubeCluster) setState(state string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.status.State != state {
		k.status.State, k.status.Since = state, time.Now()
	}
	switch {
	case err != nil:
		k.status.LastError = err.Error()
		k.status.Failures++
	case state == StateSynced:
		k.status.SyncedAt = time.Now()
	}
}

// errRecovered ends a run whose watches failed once the apiserver answers
// again: fresh informers relist at once and the resync sends what changed
// meanwhile, instead of waiting out the reflectors' own backoff (up to 30 s).
var errRecovered = errors.New("apiserver reachable again: resyncing")

// Run reads the cluster until ctx ends, retrying with backoff while it
// cannot connect. It never sends OpLeave: a stopped source keeps its
// state in the Store (see Remove).
func (k *KubeCluster) Run(ctx context.Context) {
	backoff := 500 * time.Millisecond
	var failingSince time.Time
	for ctx.Err() == nil {
		err := k.runOnce(ctx)
		if err == nil || errors.Is(err, errRecovered) {
			failingSince = time.Time{}
		} else if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if k.StaleAfter > 0 && !failingSince.IsZero() && time.Since(failingSince) > k.StaleAfter {
			k.drain()
		}
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errRecovered) {
			k.log.Info("member cluster reachable again, resyncing")
			backoff = 500 * time.Millisecond
			continue
		}
		k.setState(StateFailing, err)
		k.log.Warn("member cluster unreachable, keeping its last known state", "err", err, "retryIn", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	k.setState(StateStopped, nil)
}

// drain empties the Store of a cluster unreachable for longer than
// StaleAfter; its next sync brings everything back.
func (k *KubeCluster) drain() {
	k.gate.Lock()
	defer k.gate.Unlock()
	if k.drained || k.closed {
		return
	}
	k.drained = true
	k.log.Warn("member cluster unreachable for too long: draining its state", "staleAfter", k.StaleAfter)
	k.sent = map[kubeKey]string{}
	k.sink([]event.Event{{Member: k.member, Op: event.OpLeave}}, nil)
}

// Remove tells the Store the cluster left the ClusterSet: everything it
// held is drained, and nothing this run still sees is sent after.
func (k *KubeCluster) Remove() {
	k.gate.Lock()
	defer k.gate.Unlock()
	k.closed = true
	k.sink([]event.Event{{Member: k.member, Op: event.OpLeave}}, nil)
}

// runOnce discovers what the cluster serves, runs informers until they
// fail to sync or ctx ends.
func (k *KubeCluster) runOnce(ctx context.Context) error {
	k.setState(StateConnecting, nil)
	caps, err := k.discover(ctx)
	if err != nil {
		return err
	}
	k.conn.setCapabilities(caps)
	k.mu.Lock()
	k.status.ExportVersion = caps.MCSVersion
	k.mu.Unlock()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchErrs := make(chan error, 8)
	set, err := k.newInformers(caps)
	if err != nil {
		return err
	}

	// Events wait in a queue until the initial sync is sent, then flow
	// in small batches.
	q := newEventQueue()
	for _, si := range set.informers {
		_ = si.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			select {
			case watchErrs <- err:
			default:
			}
		})
		if _, err := si.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { q.push(k.event(event.OpUpsert, o)) },
			UpdateFunc: func(_, o any) { q.push(k.event(event.OpUpsert, o)) },
			DeleteFunc: func(o any) { q.push(k.event(event.OpDelete, o)) },
		}); err != nil {
			return err
		}
	}
	for _, f := range set.factories {
		f.Start(runCtx.Done())
	}
	// Shutdown waits for the informers, which stop only once runCtx ends.
	defer func() {
		cancel()
		for _, f := range set.factories {
			f.Shutdown()
		}
	}()

	if done, err := waitSynced(ctx, set.informers, watchErrs); done || err != nil {
		return err
	}
	// Events queued so far are in the informers' stores: drop them, then
	// send the stores. (An event racing the listing is sent twice; an
	// upsert is idempotent.)
	q.take()
	k.sendSync(set.informers)
	k.setState(StateSynced, nil)
	k.log.Info("member cluster synced", "generation", k.conn.Generation)
	if k.onSynced != nil {
		k.onSynced()
	}
	return k.follow(ctx, runCtx, q, watchErrs)
}

// factory is what every informer factory does.
type factory interface {
	Start(stop <-chan struct{})
	Shutdown()
}

// informerSet is a member's informers and the factories that run them.
type informerSet struct {
	factories []factory
	informers []cache.SharedIndexInformer
}

// newInformers makes an informer per kind the member serves and grants
// (caps), each caching objects trimmed to what eastwest reads, as the
// kinds table (event.Kinds) says: which client, which selectors.
func (k *KubeCluster) newInformers(caps Capabilities) (informerSet, error) {
	type factoryKey struct {
		client       event.Client
		group        string
		label, field string
	}
	type genericFactory struct {
		factory
		forResource func(schema.GroupVersionResource) (cache.SharedIndexInformer, error)
	}
	c := k.conn
	made := map[factoryKey]genericFactory{}
	var set informerSet
	for _, kd := range event.Kinds {
		gvr, ok := caps.Resources[kd.GVK.GroupKind()]
		if !ok || gvr.Version != kd.GVK.Version || kd.Client == event.Inventory {
			continue // not served, not granted, or read in another version
		}
		key := factoryKey{client: kd.Client, group: kd.GVK.Group, label: kd.LabelSelector, field: kd.FieldSelector}
		if kd.Client == event.Dynamic {
			key.group = ""
		}
		f, ok := made[key]
		if !ok {
			tweak := func(o *metav1.ListOptions) { o.LabelSelector, o.FieldSelector = key.label, key.field }
			switch {
			case kd.Client == event.Dynamic:
				df := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.Dynamic, 0, metav1.NamespaceAll, tweak)
				f = genericFactory{df, func(gvr schema.GroupVersionResource) (cache.SharedIndexInformer, error) {
					return df.ForResource(gvr).Informer(), nil
				}}
			case kd.GVK.Group == "" || kd.GVK.Group == discoveryv1.GroupName:
				cf := informers.NewSharedInformerFactoryWithOptions(c.Core, 0, informers.WithTransform(trim), informers.WithTweakListOptions(tweak))
				f = genericFactory{cf, informerOf(cf.ForResource)}
			case kd.GVK.Group == mcsv1b1.GroupName:
				mf := mcsinformers.NewSharedInformerFactoryWithOptions(c.MCS, 0, mcsinformers.WithTransform(trim), mcsinformers.WithTweakListOptions(tweak))
				f = genericFactory{mf, informerOf(mf.ForResource)}
			case kd.GVK.Group == gwapiv1.GroupName:
				gf := gwinformers.NewSharedInformerFactoryWithOptions(c.Gateway, 0, gwinformers.WithTransform(trim), gwinformers.WithTweakListOptions(tweak))
				f = genericFactory{gf, informerOf(gf.ForResource)}
			default:
				return informerSet{}, fmt.Errorf("no typed client for %v: read it with the dynamic client (event.Kinds)", kd.GVK)
			}
			made[key] = f
			set.factories = append(set.factories, f)
		}
		si, err := f.forResource(gvr)
		if err != nil {
			return informerSet{}, fmt.Errorf("%v: %w", kd.GVK, err)
		}
		if kd.Client == event.Dynamic {
			// Cached as the kind's Go type, trimmed like the others.
			if err := si.SetTransform(k.typedFromDynamic(kd)); err != nil {
				return informerSet{}, err
			}
		}
		set.informers = append(set.informers, si)
	}
	return set, nil
}

// informerOf adapts a typed informer factory's ForResource (each
// clientset's generator gives it its own GenericInformer type).
func informerOf[I interface {
	Informer() cache.SharedIndexInformer
}](forResource func(schema.GroupVersionResource) (I, error)) func(schema.GroupVersionResource) (cache.SharedIndexInformer, error) {
	return func(gvr schema.GroupVersionResource) (cache.SharedIndexInformer, error) {
		i, err := forResource(gvr)
		if err != nil {
			return nil, err
		}
		return i.Informer(), nil
	}
}

// typedFromDynamic converts a dynamic informer's objects to the kind's Go
// type, then trims them. An object that does not convert is cached as it
// came, and left out with a warning when it is read.
func (k *KubeCluster) typedFromDynamic(kd event.Kind) cache.TransformFunc {
	return func(o any) (any, error) {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			return o, nil
		}
		obj := kd.New()
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
			k.log.Warn("cannot read "+u.GetKind(), "namespace", u.GetNamespace(), "name", u.GetName(), "err", err)
			return o, nil
		}
		return trim(obj)
	}
}

// waitSynced waits for the informers' initial lists; a permission error
// fails at once (the reflectors would retry it silently until the
// timeout). done is set when ctx ended first.
func waitSynced(ctx context.Context, sis []cache.SharedIndexInformer, watchErrs <-chan error) (done bool, err error) {
	deadline := time.After(time.Minute)
	for !allSynced(sis) {
		select {
		case <-ctx.Done():
			return true, nil
		case err := <-watchErrs:
			if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
				return false, fmt.Errorf("initial sync: %w", err)
			}
		case <-deadline:
			return false, errors.New("initial sync did not finish within a minute")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false, nil
}

// follow sends the member's events as they come, until ctx ends or the
// member answers again after failing. client-go's reflectors retry a
// lost apiserver with a backoff that grows to 30 s, silently: a probe
// says when the cluster is failing, and when it answers again the run
// ends so that fresh informers relist at once.
//
// The probe asks every probeEvery while the member answers, and every
// probeEveryWhileDown once one probe failed; the member is failing after
// probeFailures failures in a row. One slow answer is not an outage: at
// 250 members a control plane's cold start kept the members' apiservers
// (simulated, on the same cores) busy enough to miss a 2 s probe, and
// declaring those members failing restarted their informers, whose
// relists made the next probes slower (issue 29).
func (k *KubeCluster) follow(ctx, runCtx context.Context, q *eventQueue, watchErrs <-chan error) error {
	health := make(chan error, 1)
	var suspect atomic.Bool
	go k.probe(runCtx, health, &suspect)
	down := false
	failures := 0
	var stale <-chan time.Time
	for {
		select {
		case <-stale:
			k.drain()
		case <-ctx.Done():
			return nil
		case <-q.ready:
			k.deliver(q.take())
		case err := <-health:
			if err != nil {
				failures++
			} else {
				failures = 0
			}
			suspect.Store(failures > 0 || down)
			switch {
			case err != nil && !down && failures >= probeFailures:
				down = true
				k.setState(StateFailing, err)
				k.log.Warn("member cluster unreachable, keeping its last known state", "err", err, "drainAfter", k.StaleAfter)
				if k.StaleAfter > 0 {
					stale = time.After(k.StaleAfter)
				}
			case err == nil && down:
				return errRecovered
			}
		case err := <-watchErrs:
			// Errors the reflectors do not retry (a lost permission, a
			// removed CRD) are worth a line.
			k.log.Warn("member cluster watch error", "err", err)
		}
	}
}

// How a synced member's apiserver is probed (see follow).
const (
	probeEvery          = 5 * time.Second
	probeEveryWhileDown = time.Second
	probeFailures       = 2
)

// probe asks the apiserver for its version, every probeEvery, or every
// probeEveryWhileDown while suspect, and reports the outcome.
func (k *KubeCluster) probe(ctx context.Context, out chan<- error, suspect *atomic.Bool) {
	client := k.conn.probe
	for {
		every := probeEvery
		if suspect.Load() {
			every = probeEveryWhileDown
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		_, err := client.Discovery().ServerVersion()
		select {
		case out <- err:
		case <-ctx.Done():
			return
		}
	}
}

func allSynced(sis []cache.SharedIndexInformer) bool {
	for _, si := range sis {
		if !si.HasSynced() {
			return false
		}
	}
	return true
}

// discover finds, for every kind of the table, the first version the
// member serves, and keeps those eastwest may list: one rule for every
// kind, cancelled with ctx. A required kind not served or not granted
// fails the connection; another is left out, with a warning saying what
// the member loses.
func (k *KubeCluster) discover(ctx context.Context) (Capabilities, error) {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	caps := Capabilities{Resources: map[schema.GroupKind]schema.GroupVersionResource{}}
	served := map[schema.GroupVersion][]metav1.APIResource{}
	for _, kd := range event.Kinds {
		gk, gv := kd.GVK.GroupKind(), kd.GVK.GroupVersion()
		if caps.Reads(gk) || kd.Client == event.Inventory {
			continue // a preferred version is served
		}
		res, ok := served[gv]
		if !ok {
			var err error
			res, err = resourcesOf(ctx, k.conn.Core.Discovery(), gv)
			if err != nil && !apierrors.IsNotFound(err) {
				return Capabilities{}, fmt.Errorf("discovery of %s: %w", gv, err)
			}
			served[gv] = res
		}
		if slices.ContainsFunc(res, func(r metav1.APIResource) bool { return r.Name == kd.Resource }) {
			caps.Resources[gk] = gv.WithResource(kd.Resource)
		}
	}
	for _, kd := range event.Kinds {
		gk := kd.GVK.GroupKind()
		gvr, ok := caps.Resources[gk]
		if kd.Required && !ok {
			return Capabilities{}, fmt.Errorf("the cluster serves no %s %s: %s", gk.Group, kd.GVK.Kind, kd.Unread)
		}
		if !ok || kd.Required || gvr.Version != kd.GVK.Version || kd.Client == event.Inventory {
			// A required kind's informer fails its first list,
			// saying why, where it is not granted.
			continue
		}
		opts := metav1.ListOptions{Limit: 1, LabelSelector: kd.LabelSelector, FieldSelector: kd.FieldSelector}
		_, err := k.conn.Dynamic.Resource(gvr).List(ctx, opts)
		switch {
		case apierrors.IsForbidden(err) || apierrors.IsNotFound(err):
			k.log.Warn("member cluster's "+kd.Resource+" are not read: "+kd.Unread, "resource", gvr.String(), "err", err)
			delete(caps.Resources, gk)
		case err != nil:
			return Capabilities{}, fmt.Errorf("list %s: %w", gvr, err)
		}
	}
	if gvr, ok := caps.Resources[mcsv1b1.SchemeGroupVersion.WithKind(mcsv1b1.ServiceExportKindName).GroupKind()]; ok {
		caps.MCSVersion = gvr.Version
	}
	return caps, nil
}

// discoveryTimeout bounds a member's discovery, as a whole.
const discoveryTimeout = 30 * time.Second

// OwnSlicesExcluded is the label selector of the EndpointSlice informers:
// every slice but the MCS slices eastwest writes.
const OwnSlicesExcluded = event.OwnSlicesExcluded

// sendSync sends the cluster's whole state: a join and every object that
// is new or changed since the Store last heard, and deletes for objects
// that disappeared while the cluster was unreachable.
func (k *KubeCluster) sendSync(sis []cache.SharedIndexInformer) {
	k.gate.Lock()
	defer k.gate.Unlock()
	if k.closed {
		return
	}
	evs := []event.Event{{Member: k.member, Op: event.OpJoin}}
	seen := map[kubeKey]bool{}
	lists := make([][]any, 0, len(sis)+1)
	if k.profile != nil {
		lists = append(lists, []any{k.profile})
	}
	for _, si := range sis {
		lists = append(lists, si.GetStore().List())
	}
	for _, list := range lists {
		for _, o := range list {
			ev := k.event(event.OpUpsert, o)
			if ev.Object == nil {
				continue
			}
			key := keyOfKube(ev.Object)
			seen[key] = true
			if k.sent[key] == ev.Object.GetResourceVersion() {
				continue
			}
			evs = append(evs, ev)
		}
	}
	for key := range k.sent {
		if !seen[key] {
			evs = append(evs, event.Event{Member: k.member, Op: event.OpDelete, Object: stub(key)})
		}
	}
	k.record(evs)
	k.drained, k.synced = false, true
	k.sink(evs, nil)
}

// record notes what the Store was told, and returns the events; called
// under the gate.
func (k *KubeCluster) record(evs []event.Event) []event.Event {
	out := evs[:0]
	for _, ev := range evs {
		if ev.Object == nil {
			if ev.Op == event.OpJoin {
				out = append(out, ev)
			}
			continue
		}
		key := keyOfKube(ev.Object)
		if ev.Op == event.OpDelete {
			delete(k.sent, key)
		} else {
			k.sent[key] = ev.Object.GetResourceVersion()
		}
		out = append(out, ev)
	}
	return out
}

// event converts an informer object to an event; unknown or unusable
// objects give an event without an object.
func (k *KubeCluster) event(op event.Op, o any) event.Event {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	ev := event.Event{Member: k.member, Op: op}
	if _, ok := event.KindOf(o); ok {
		ev.Object = o.(metav1.Object)
	}
	return ev
}

func keyOfKube(o metav1.Object) kubeKey {
	k, _ := event.KindOf(o)
	return kubeKey{kind: k.GVK.GroupKind(), namespace: o.GetNamespace(), name: o.GetName()}
}

// stub is an object carrying only the kind, namespace and name, for a
// delete.
func stub(k kubeKey) metav1.Object {
	for _, kd := range event.Kinds {
		if kd.GVK.GroupKind() == k.kind {
			o := kd.New()
			o.SetNamespace(k.namespace)
			o.SetName(k.name)
			if sec, ok := o.(*corev1.Secret); ok {
				sec.Type = corev1.SecretTypeTLS // the only Secrets the informer lists
			}
			return o
		}
	}
	return &mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: k.namespace, Name: k.name}}
}

// sharedHints is an endpoint's zone hints, without node hints, as one
// allocation for every endpoint of the slice with the same zones; nil
// for none.
func sharedHints(seen map[string]*discoveryv1.EndpointHints, h *discoveryv1.EndpointHints) *discoveryv1.EndpointHints {
	if h == nil || len(h.ForZones) == 0 {
		return nil
	}
	names := make([]string, len(h.ForZones))
	for i, z := range h.ForZones {
		names[i] = z.Name
	}
	key := strings.Join(names, "\x00")
	if s, ok := seen[key]; ok {
		return s
	}
	s := &discoveryv1.EndpointHints{ForZones: slices.Clone(h.ForZones)}
	seen[key] = s
	return s
}

// trim drops what eastwest never reads before an object is cached:
// managed fields everywhere, a Service's annotations (kubectl's
// last-applied copy can be larger than the Service), and per endpoint the
// target reference, node name and node hints (its zone hints stay: they
// are trafficDistribution's, read by translate, and shared per slice).
func trim(o any) (any, error) {
	if m, ok := o.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	switch v := o.(type) {
	case *corev1.Service:
		// An east-west gateway's Service keeps the one annotation read:
		// the name of its tunnel Secret.
		secret, named := v.Annotations[mcs.AnnotationTunnelSecret]
		v.Annotations = nil
		if named && v.Labels[mcs.LabelGateway] != "" {
			v.Annotations = map[string]string{mcs.AnnotationTunnelSecret: secret}
		}
		v.Spec.Selector = nil
		// The load balancer addresses of a Gateway's Service are its
		// status.addresses, those of an east-west gateway's Service
		// where other networks reach the member; other Services'
		// status is never read.
		if v.Labels[gwapiv1.GatewayNameLabelKey] == "" && v.Labels[mcs.LabelGateway] == "" {
			v.Status = corev1.ServiceStatus{}
		} else {
			v.Status.Conditions = nil
		}
	case *discoveryv1.EndpointSlice:
		v.Annotations = nil
		// Decoding grows the endpoints' array by doubling: keep an exact
		// one (the slice is cached for as long as it lives).
		if cap(v.Endpoints) > len(v.Endpoints) {
			v.Endpoints = slices.Clone(v.Endpoints)
		}
		zones := map[string]*string{}
		hints := map[string]*discoveryv1.EndpointHints{}
		for i := range v.Endpoints {
			e := &v.Endpoints[i]
			e.TargetRef, e.NodeName, e.DeprecatedTopology = nil, nil, nil
			e.Hints = sharedHints(hints, e.Hints)
			// Share what repeats: the condition booleans and each zone
			// are one allocation for the whole slice, not one per
			// endpoint (about a third of an endpoint's memory).
			e.Conditions.Ready = shared(e.Conditions.Ready)
			e.Conditions.Serving = shared(e.Conditions.Serving)
			e.Conditions.Terminating = shared(e.Conditions.Terminating)
			if e.Zone != nil {
				if z, ok := zones[*e.Zone]; ok {
					e.Zone = z
				} else {
					zones[*e.Zone] = e.Zone
				}
			}
		}
	case *corev1.Namespace:
		// Labels stay: Gateway listeners select route namespaces by them.
		v.Annotations = nil
		v.Spec = corev1.NamespaceSpec{}
	case *corev1.Secret:
		// kubectl's last-applied annotation holds a copy of the key.
		v.Annotations = nil
	}
	return o, nil
}

var trueValue, falseValue = true, false

// shared returns a pointer to a shared copy of *b (the cached objects are
// never modified).
func shared(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return &trueValue
	}
	return &falseValue
}

// eventQueue gathers informer events between sends.
type eventQueue struct {
	mu     sync.Mutex
	events []event.Event
	ready  chan struct{}
}

func newEventQueue() *eventQueue { return &eventQueue{ready: make(chan struct{}, 1)} }

func (q *eventQueue) push(ev event.Event) {
	if ev.Object == nil {
		return
	}
	q.mu.Lock()
	q.events = append(q.events, ev)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *eventQueue) take() []event.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs := q.events
	q.events = nil
	return evs
}
