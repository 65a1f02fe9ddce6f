package writeback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"time"

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
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// The write-back reads what it compares from caches of the objects it
// owns (informers on its labels) and of the ServiceExports, not from the
// apiserver: a change costs the writes it needs and nothing else, and a
// pass over 1,000 unchanged services costs no request at all (it cost
// five requests per service, at the client's 50 per second: 100 s). A
// write refused because the cache was behind (a conflict, or "already
// exists" for an object not seen yet) is retried once from the apiserver.

// cacheSyncWait bounds how long a pass waits for a member's caches to
// sync; a member that is not synced by then fails this pass (and is tried
// again at the next) without holding up the others.
const cacheSyncWait = 5 * time.Second

// digestKey is where a cached MCS EndpointSlice keeps the digest of its
// endpoints instead of the endpoints (100,000 endpoints are some 15 MB).
// It exists only in the cache: writes remove it.
const digestKey = "eastwest.io/cached-endpoints-digest"

// byService indexes the MCS EndpointSlices by namespace/service.
const byService = "service"

// caches are one member's informers.
type caches struct {
	imports, exports, services, slices cache.SharedIndexInformer
	// stop ends the informers.
	stop context.CancelFunc
}

func (m *member) startCaches(parent context.Context) error {
	ctx, stop := context.WithCancel(parent)
	byManaged := func(o *metav1.ListOptions) { o.LabelSelector = LabelManagedBy + "=" + ManagedByValue }
	dyn := dynamicinformer.NewDynamicSharedInformerFactory(m.dyn, 0)
	dynManaged := dynamicinformer.NewFilteredDynamicSharedInformerFactory(m.dyn, 0, metav1.NamespaceAll, byManaged)
	typed := informers.NewSharedInformerFactoryWithOptions(m.client, 0, informers.WithTweakListOptions(byManaged))
	ownSlices := informers.NewSharedInformerFactoryWithOptions(m.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = discoveryv1.LabelManagedBy + "=" + mcs.ControllerName
	}))
	c := &caches{
		imports:  dynManaged.ForResource(m.gvr("serviceimports")).Informer(),
		exports:  dyn.ForResource(m.gvr("serviceexports")).Informer(),
		services: typed.Core().V1().Services().Informer(),
		slices:   ownSlices.Discovery().V1().EndpointSlices().Informer(),
		stop:     stop,
	}
	m.caches = c
	for inf, transform := range map[cache.SharedIndexInformer]cache.TransformFunc{
		c.imports:  asTyped[mcsv1b1.ServiceImport],
		c.exports:  asTyped[mcsv1b1.ServiceExport],
		c.services: dropManagedFields,
	} {
		if err := inf.SetTransform(transform); err != nil {
			stop()
			return err
		}
	}
	if err := c.slices.SetTransform(digestSlice); err != nil {
		stop()
		return err
	}
	if err := c.slices.AddIndexers(cache.Indexers{byService: func(o any) ([]string, error) {
		s := o.(*discoveryv1.EndpointSlice)
		return []string{s.Namespace + "/" + s.Labels[mcsv1b1.LabelServiceName]}, nil
	}}); err != nil {
		stop()
		return err
	}
	for _, f := range []interface{ Start(<-chan struct{}) }{dyn, dynManaged, typed, ownSlices} {
		f.Start(ctx.Done())
	}
	return nil
}

// synced waits, up to cacheSyncWait, for the caches' first list.
func (c *caches) synced(ctx context.Context) error {
	wait, cancel := context.WithTimeout(ctx, cacheSyncWait)
	defer cancel()
	if !cache.WaitForCacheSync(wait.Done(), c.imports.HasSynced, c.exports.HasSynced, c.services.HasSynced, c.slices.HasSynced) {
		return fmt.Errorf("caches of the member's objects not synced yet (waited %v)", cacheSyncWait)
	}
	return nil
}

func dropManagedFields(o any) (any, error) {
	if m, ok := o.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return o, nil
}

// mcsObject is a typed MCS object (a ServiceImport or a ServiceExport).
type mcsObject[T any] interface {
	*T
	metav1.Object
	runtime.Object
}

// asTyped converts an MCS object from the dynamic informer to its Go type,
// without managed fields, once as it arrives: every comparison reads the
// typed copy (the conversion is reflection over the whole object, and a
// pass compares the import and the export of every changed service). An
// object that does not convert is kept as it came, without managed
// fields: read reports it for that service alone (an error here would
// stop the whole informer).
func asTyped[T any, P mcsObject[T]](o any) (any, error) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return o, nil // typed already (a resync)
	}
	p, err := fromUnstructured[T, P](u)
	if err != nil {
		u.SetManagedFields(nil)
		return u, nil
	}
	return p, nil
}

func fromUnstructured[T any, P mcsObject[T]](u *unstructured.Unstructured) (P, error) {
	p := P(new(T))
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, p); err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	p.SetManagedFields(nil)
	return p, nil
}

// digestSlice keeps a digest of an MCS EndpointSlice's endpoints in place
// of them.
func digestSlice(o any) (any, error) {
	s, ok := o.(*discoveryv1.EndpointSlice)
	if !ok {
		return o, nil
	}
	s.ManagedFields = nil
	if s.Annotations[digestKey] != "" {
		return s, nil // already digested (a resync)
	}
	d, err := endpointsDigest(s.Endpoints)
	if err != nil {
		return nil, err
	}
	annotations := make(map[string]string, len(s.Annotations)+1)
	for k, v := range s.Annotations {
		annotations[k] = v
	}
	annotations[digestKey] = d
	s.Annotations, s.Endpoints = annotations, nil
	return s, nil
}

// endpointsDigest is the digest of a slice's endpoints: a hash of their
// protobuf encoding, which Kubernetes' generated code makes deterministic
// (map keys sorted). It is compared only within this process, never
// stored, so its form may change between releases. (Protobuf instead of
// JSON: a fifth of the cost for 100 endpoints, on every change.)
func endpointsDigest(eps []discoveryv1.Endpoint) (string, error) {
	b, err := (&discoveryv1.EndpointSlice{Endpoints: eps}).Marshal()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}

// read reads an MCS object: a copy from the informer's cache (callers
// change it), or from the apiserver.
func read[T any, P mcsObject[T]](ctx context.Context, res dynamic.ResourceInterface, inf cache.SharedIndexInformer, cached bool, ns, name string) (P, error) {
	if !cached {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return fromUnstructured[T, P](u)
	}
	o, ok, err := inf.GetIndexer().GetByKey(ns + "/" + name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: mcsv1b1.GroupName}, name)
	}
	switch o := o.(type) {
	case P:
		return o.DeepCopyObject().(P), nil
	case *unstructured.Unstructured:
		return fromUnstructured[T, P](o) // one that did not convert (asTyped)
	}
	return nil, fmt.Errorf("cached %s/%s is a %T", ns, name, o)
}

// readOwn reads as read does, but from the apiserver while the cache has
// not shown this writer's own last write of the object yet (ownUnseen):
// a member's pass right after its previous one would otherwise compare
// with the state before that write, and a change undone between the two
// passes would look written.
func readOwn[T any, P mcsObject[T]](ctx context.Context, m *member, resource string, res dynamic.ResourceInterface, inf cache.SharedIndexInformer, cached bool, ns, name string) (P, error) {
	if cached {
		p, err := read[T, P](ctx, res, inf, true, ns, name)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		rv := ""
		if err == nil {
			rv = p.GetResourceVersion()
		}
		if !m.ownUnseen(resource, ns, name, rv, err == nil) {
			return p, err
		}
	}
	return read[T, P](ctx, res, nil, false, ns, name)
}

// cachedThenLive runs write with cached true and, after a conflict, again
// with cached false: it compares with the cache first, then with the
// apiserver.
func cachedThenLive(write func(cached bool) error) error {
	attempt := 0
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		attempt++
		return write(attempt == 1)
	})
}

// cachedService reads a derived Service (a copy), from the apiserver
// while the cache has not shown this writer's own last write of it.
func (m *member) cachedService(ctx context.Context, ns, name string) (*corev1.Service, error) {
	o, ok, err := m.caches.services.GetIndexer().GetByKey(ns + "/" + name)
	if err != nil {
		return nil, err
	}
	rv := ""
	if ok {
		rv = o.(*corev1.Service).ResourceVersion
	}
	if m.ownUnseen("services", ns, name, rv, ok) {
		return m.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("services"), name)
	}
	return o.(*corev1.Service).DeepCopy(), nil
}

// ownWrite is this writer's last write of an object: the resource version
// the apiserver gave it ("" for a delete) and when.
type ownWrite struct {
	rv string
	at time.Time
}

// noteOwn records this writer's write of an object (rv "" for a delete).
func (m *member) noteOwn(resource, ns, name, rv string) {
	m.ownMu.Lock()
	defer m.ownMu.Unlock()
	now := time.Now()
	if m.own == nil {
		m.own = map[string]ownWrite{}
	}
	if len(m.own) >= m.ownSweepAt {
		// As for the slices' records (noteSliceWrite): bounded by twice
		// the writes of cacheBehind.
		maps.DeleteFunc(m.own, func(_ string, w ownWrite) bool { return now.Sub(w.at) > cacheBehind })
		m.ownSweepAt = max(256, 2*len(m.own))
	}
	m.own[resource+"/"+ns+"/"+name] = ownWrite{rv: rv, at: now}
}

// ownUnseen reports whether this writer wrote the object less than
// cacheBehind ago and the cache (the object found with rv, or not found)
// does not show that write yet.
func (m *member) ownUnseen(resource, ns, name, rv string, found bool) bool {
	m.ownMu.Lock()
	defer m.ownMu.Unlock()
	k := resource + "/" + ns + "/" + name
	w, ok := m.own[k]
	if !ok {
		return false
	}
	if time.Since(w.at) > cacheBehind || w.rv == "" && !found || found && w.rv == rv {
		delete(m.own, k) // the cache shows it
		return false
	}
	return true
}

// cachedSlices are a service's MCS EndpointSlices, their endpoints
// replaced by digestKey.
func (m *member) cachedSlices(key mcs.ServiceKey) ([]*discoveryv1.EndpointSlice, error) {
	objs, err := m.caches.slices.GetIndexer().ByIndex(byService, key.Namespace+"/"+key.Name)
	if err != nil {
		return nil, err
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*discoveryv1.EndpointSlice).DeepCopy())
	}
	return out, nil
}

// staleCache turns an error that a stale cache explains (the object
// exists though the cache has not seen it, or is gone though it has) into
// a conflict, which retries from the apiserver.
func staleCache(err error, fromCache bool) error {
	if fromCache && (apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err)) {
		return apierrors.NewConflict(schema.GroupResource{}, "", fmt.Errorf("cache behind the apiserver: %w", err))
	}
	return err
}
