package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"

	"github.com/eastwest-dev/eastwest/internal/kubeclient"
	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/provision"
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
	// ExportVersion is the ServiceExport version read (v1beta1 when the
	// cluster serves it).
	ExportVersion string    `json:"exportVersion,omitempty"`
	LastError     string    `json:"lastError,omitempty"`
	Failures      int       `json:"failures"`
	Since         time.Time `json:"since"`
	SyncedAt      time.Time `json:"syncedAt,omitzero"`
}

// propertyVersions are the About API versions read, in order of
// preference: the first a member serves.
var propertyVersions = []schema.GroupVersion{about.GroupVersion, about.GroupVersionV1alpha1}

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
	cfg    *rest.Config
	log    *slog.Logger
	sink   func([]event.Event, []Problem)
	// StaleAfter, when positive, drains the cluster's last known state
	// once it has been unreachable that long; zero keeps it forever.
	StaleAfter time.Duration
	drained    bool

	mu     sync.Mutex
	status ClusterStatus
	// sent maps what the Store was last told to the object's resource
	// version, to diff a resync.
	sent map[kubeKey]string
}

type kubeKey struct {
	kind      schema.GroupKind
	namespace string
	name      string
}

// NewKubeCluster returns the source of one member cluster; it does
// nothing until Run.
func NewKubeCluster(member string, cfg *rest.Config, log *slog.Logger, sink func([]event.Event, []Problem)) *KubeCluster {
	return &KubeCluster{
		member: member, cfg: cfg, log: log.With("member", member), sink: sink,
		status: ClusterStatus{Member: member, State: StateConnecting, Since: time.Now()},
		sent:   map[kubeKey]string{},
	}
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
	if k.drained {
		return
	}
	k.drained = true
	k.log.Warn("member cluster unreachable for too long: draining its state", "staleAfter", k.StaleAfter)
	k.sent = map[kubeKey]string{}
	k.sink([]event.Event{{Member: k.member, Op: event.OpLeave}}, nil)
}

// Remove tells the Store the cluster left the ClusterSet: everything it
// held is drained.
func (k *KubeCluster) Remove() {
	k.sink([]event.Event{{Member: k.member, Op: event.OpLeave}}, nil)
}

// runOnce discovers what the cluster serves, runs informers until they
// fail to sync or ctx ends.
func (k *KubeCluster) runOnce(ctx context.Context) error {
	k.setState(StateConnecting, nil)
	c, err := k.connect()
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchErrs := make(chan error, 8)
	set := k.newInformers(c)

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
	k.log.Info("member cluster synced")
	return k.follow(ctx, runCtx, q, watchErrs)
}

// clients are a member's API clients and what discovery found.
type clients struct {
	core          kubernetes.Interface
	mcs           mcsclient.Interface
	dyn           dynamic.Interface
	gw            gwclient.Interface
	exportVersion string
	// properties is the ClusterProperty resource read (nil: the member
	// serves none, or does not let eastwest list them).
	properties      *schema.GroupVersionResource
	hasParameters   bool
	gatewayAPIKinds map[string]bool
}

// connect makes the member's clients and discovers which versions and
// kinds it serves.
func (k *KubeCluster) connect() (*clients, error) {
	var c clients
	var err error
	if c.core, err = kubeclient.Core(k.cfg); err != nil {
		return nil, err
	}
	if c.mcs, err = mcsclient.NewForConfig(k.cfg); err != nil {
		return nil, err
	}
	if c.dyn, err = dynamic.NewForConfig(k.cfg); err != nil {
		return nil, err
	}
	if c.exportVersion, c.properties, err = k.discover(c.core); err != nil {
		return nil, err
	}
	if c.gw, err = gwclient.NewForConfig(k.cfg); err != nil {
		return nil, err
	}
	c.gatewayAPIKinds = k.discoverGatewayAPIKinds(c.core, c.gw)
	c.hasParameters = k.canReadParameters(c.core, c.dyn)
	k.mu.Lock()
	k.status.ExportVersion = c.exportVersion
	k.mu.Unlock()
	return &c, nil
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

// newInformers makes an informer per kind the member serves (and grants),
// each caching objects trimmed to what eastwest reads.
func (k *KubeCluster) newInformers(c *clients) informerSet {
	core := informers.NewSharedInformerFactoryWithOptions(c.core, 0, informers.WithTransform(trim))
	// The MCS EndpointSlices eastwest writes are not read back: the
	// apiserver leaves them out (they would be dropped anyway, at the cost
	// of a watch event, a decode and a cached copy each).
	slicef := informers.NewSharedInformerFactoryWithOptions(c.core, 0, informers.WithTransform(trim),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = OwnSlicesExcluded }))
	mcsf := mcsinformers.NewSharedInformerFactoryWithOptions(c.mcs, 0, mcsinformers.WithTransform(trim))
	dynf := dynamicinformer.NewDynamicSharedInformerFactory(c.dyn, 0)
	gwf := gwinformers.NewSharedInformerFactoryWithOptions(c.gw, 0, gwinformers.WithTransform(trim))
	// TLS Secrets only (listener certificates), when the member grants
	// them; a member that does not still serves HTTP listeners, and its
	// HTTPS listeners report InvalidCertificateRef.
	secf := informers.NewSharedInformerFactoryWithOptions(c.core, 0, informers.WithTransform(trim),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = tlsSecrets }))
	sis := []cache.SharedIndexInformer{
		core.Core().V1().Namespaces().Informer(),
		core.Core().V1().Services().Informer(),
		slicef.Discovery().V1().EndpointSlices().Informer(),
	}
	if c.exportVersion == "v1beta1" {
		sis = append(sis, mcsf.Multicluster().V1beta1().ServiceExports().Informer())
	} else {
		sis = append(sis, mcsf.Multicluster().V1alpha1().ServiceExports().Informer())
	}
	if c.properties != nil {
		sis = append(sis, dynf.ForResource(*c.properties).Informer())
	}
	if c.hasParameters {
		sis = append(sis, dynf.ForResource(parametersGVR).Informer())
	}
	for _, gk := range []struct {
		name     string
		informer func() cache.SharedIndexInformer
	}{
		{"httproutes", func() cache.SharedIndexInformer { return gwf.Gateway().V1().HTTPRoutes().Informer() }},
		{"grpcroutes", func() cache.SharedIndexInformer { return gwf.Gateway().V1().GRPCRoutes().Informer() }},
		{"gatewayclasses", func() cache.SharedIndexInformer { return gwf.Gateway().V1().GatewayClasses().Informer() }},
		{"gateways", func() cache.SharedIndexInformer { return gwf.Gateway().V1().Gateways().Informer() }},
		{"referencegrants", func() cache.SharedIndexInformer { return gwf.Gateway().V1().ReferenceGrants().Informer() }},
	} {
		if c.gatewayAPIKinds[gk.name] {
			sis = append(sis, gk.informer())
		}
	}
	if k.canListTLSSecrets(c.core) {
		sis = append(sis, secf.Core().V1().Secrets().Informer())
	}
	return informerSet{factories: []factory{core, slicef, mcsf, dynf, gwf, secf}, informers: sis}
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
// every second says when the cluster is failing, and when it answers
// again the run ends so that fresh informers relist at once.
func (k *KubeCluster) follow(ctx, runCtx context.Context, q *eventQueue, watchErrs <-chan error) error {
	health := make(chan error, 1)
	go k.probe(runCtx, health)
	down := false
	var stale <-chan time.Time
	for {
		select {
		case <-stale:
			k.drain()
		case <-ctx.Done():
			return nil
		case <-q.ready:
			if evs := k.record(q.take()); len(evs) > 0 {
				k.sink(evs, nil)
			}
		case err := <-health:
			switch {
			case err != nil && !down:
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

// probe asks the apiserver for its version every second and reports the
// outcome.
func (k *KubeCluster) probe(ctx context.Context, out chan<- error) {
	cfg := rest.CopyConfig(k.cfg)
	cfg.Timeout = 2 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
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

// discover finds which ServiceExport version the cluster serves and
// which ClusterProperty version, if any, eastwest reads.
func (k *KubeCluster) discover(client kubernetes.Interface) (string, *schema.GroupVersionResource, error) {
	version := ""
	for _, v := range []string{"v1beta1", "v1alpha1"} {
		res, err := client.Discovery().ServerResourcesForGroupVersion(mcsv1b1.GroupName + "/" + v)
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return "", nil, err
		}
		for _, r := range res.APIResources {
			if r.Name == "serviceexports" {
				version = v
				break
			}
		}
		if version != "" {
			break
		}
	}
	if version == "" {
		return "", nil, errors.New("the cluster serves no multicluster.x-k8s.io ServiceExports: install the mcs-api CRDs")
	}
	var gvr *schema.GroupVersionResource
	for _, gv := range propertyVersions {
		res, err := client.Discovery().ServerResourcesForGroupVersion(gv.String())
		if err == nil && slices.ContainsFunc(res.APIResources, func(r metav1.APIResource) bool { return r.Name == about.Resource }) {
			gvr = &schema.GroupVersionResource{Group: gv.Group, Version: gv.Version, Resource: about.Resource}
			break
		}
	}
	if gvr != nil {
		// Read the properties only where eastwest may list them.
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: "list", Group: gvr.Group, Resource: gvr.Resource,
		}}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{}); err == nil && !r.Status.Allowed {
			k.log.Warn("member cluster's ClusterProperties are not read: not allowed to list them")
			gvr = nil
		}
	}
	return version, gvr, nil
}

// tlsSecrets selects the Secrets eastwest reads: Gateway listener
// certificates.
const tlsSecrets = "type=kubernetes.io/tls" //nolint:gosec // a field selector, not a credential

// OwnSlicesExcluded is the label selector of the EndpointSlice informers:
// every slice but the MCS slices eastwest writes.
const OwnSlicesExcluded = discoveryv1.LabelManagedBy + "!=" + mcs.ControllerName

// canListTLSSecrets reports whether the member lets eastwest list its TLS
// Secrets, logging why not.
func (k *KubeCluster) canListTLSSecrets(client kubernetes.Interface) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.CoreV1().Secrets("").List(ctx, metav1.ListOptions{Limit: 1, FieldSelector: tlsSecrets}); err != nil {
		k.log.Warn("member cluster's TLS Secrets are not read: HTTPS listeners of its Gateways will not be programmed", "err", err)
		return false
	}
	return true
}

// discoverGatewayAPIKinds finds which Gateway API kinds (routes, Gateways,
// GatewayClasses, ReferenceGrants) the cluster serves and lets eastwest
// list. None is fine: a member without the Gateway API, or that does not
// grant it, is still read, and the log says why those objects are not.
func (k *KubeCluster) discoverGatewayAPIKinds(client kubernetes.Interface, gwc gwclient.Interface) map[string]bool {
	out := map[string]bool{}
	res, err := client.Discovery().ServerResourcesForGroupVersion(gwapiv1.GroupVersion.String())
	if err != nil {
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range res.APIResources {
		var err error
		switch r.Name {
		case "httproutes":
			_, err = gwc.GatewayV1().HTTPRoutes("").List(ctx, metav1.ListOptions{Limit: 1})
		case "grpcroutes":
			_, err = gwc.GatewayV1().GRPCRoutes("").List(ctx, metav1.ListOptions{Limit: 1})
		case "gateways":
			_, err = gwc.GatewayV1().Gateways("").List(ctx, metav1.ListOptions{Limit: 1})
		case "gatewayclasses":
			_, err = gwc.GatewayV1().GatewayClasses().List(ctx, metav1.ListOptions{Limit: 1})
		case "referencegrants":
			_, err = gwc.GatewayV1().ReferenceGrants("").List(ctx, metav1.ListOptions{Limit: 1})
		default:
			continue
		}
		if err != nil {
			k.log.Warn("member cluster's routes are not read", "resource", r.Name, "err", err)
			continue
		}
		out[r.Name] = true
	}
	return out
}

// parametersGVR is eastwest's GatewayParameters.
var parametersGVR = provision.GroupVersion.WithResource("gatewayparameters")

// canReadParameters reports whether the cluster serves eastwest's
// GatewayParameters and lets eastwest list them. A member without them
// (the CRD not installed, not granted) is read all the same: its classes
// and Gateways that name parameters report InvalidParameters.
func (k *KubeCluster) canReadParameters(client kubernetes.Interface, dyn dynamic.Interface) bool {
	res, err := client.Discovery().ServerResourcesForGroupVersion(provision.GroupVersion.String())
	if err != nil || !slices.ContainsFunc(res.APIResources, func(r metav1.APIResource) bool { return r.Name == parametersGVR.Resource }) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := dyn.Resource(parametersGVR).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		k.log.Warn("member cluster's GatewayParameters are not read", "err", err)
		return false
	}
	return true
}

// sendSync sends the cluster's whole state: a join and every object that
// is new or changed since the Store last heard, and deletes for objects
// that disappeared while the cluster was unreachable.
func (k *KubeCluster) sendSync(sis []cache.SharedIndexInformer) {
	evs := []event.Event{{Member: k.member, Op: event.OpJoin}}
	seen := map[kubeKey]bool{}
	for _, si := range sis {
		for _, o := range si.GetStore().List() {
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
	k.drained = false
	k.sink(evs, nil)
}

// record notes what the Store was told, and returns the events.
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
		return ev
	}
	v, ok := o.(*unstructured.Unstructured)
	if !ok {
		return ev
	}
	// The dynamic informers' kinds: ClusterProperty and GatewayParameters.
	var obj metav1.Object = &about.ClusterProperty{}
	if v.GetKind() == provision.KindGatewayParameters {
		obj = &provision.GatewayParameters{}
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(v.Object, obj); err != nil {
		k.log.Warn("cannot read "+v.GetKind(), "namespace", v.GetNamespace(), "name", v.GetName(), "err", err)
		return ev
	}
	ev.Object = obj
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
