package writeback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
)

// LabelManagedBy marks every object eastwest writes (its value is
// ManagedByValue); EndpointSlices carry endpointslice.kubernetes.io/managed-by
// = mcs.ControllerName as well.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "eastwest"
)

// AnnotationDerivedService on a ClusterSetIP ServiceImport names the
// derived Service in its namespace that holds its ClusterSet IP.
const AnnotationDerivedService = "multicluster.kubernetes.io/derived-service"

// DerivedName is the name of the ClusterIP Service that holds a
// ClusterSetIP import's IPs, as the mcs-api reference controllers name it.
func DerivedName(key mcs.ServiceKey) string {
	sum := sha256.Sum256([]byte(key.Namespace + "/" + key.Name))
	return "derived-" + hex.EncodeToString(sum[:])[:10]
}

// Members gives a member cluster's connection by member name (the one
// its source reads through: the write-back never makes clients of its
// own), and when its source last (re)synced with the member's apiserver.
type Members interface {
	Conn(member string) (*source.Conn, bool)
	SyncedAt(member string) time.Time
}

// Writeback reconciles member clusters with the merged state.
type Writeback struct {
	log     *slog.Logger
	members Members

	// clients are the members written, by name (clientsMu).
	clientsMu sync.Mutex
	clients   map[string]*member

	mu sync.Mutex
	// queues are the members' places in the write-back, by name;
	// changes the log of changed services not yet taken by every member,
	// base the sequence number of its first (queue.go).
	queues  map[string]*queue
	changes []change
	base    uint64
	// workers counts the members' passes running.
	workers int
	// dirty is set once a pass was started (or every member made to owe
	// one) since the write-back last caught up: its catching up then
	// counts as a pass (Passes). departed is set when a member left (its
	// writer is dropped at the next schedule).
	dirty, departed bool
	// retries are the members whose last pass failed, each tried again
	// after its own backoff (backoff.go).
	retries map[string]*backoffState
	// onFailed, when set, is told each member pass that failed.
	onFailed func(member string)
	state    *mcs.State
	stateSeq uint64
	wake     chan struct{}
	// statuses are the Gateway API statuses by member; statusPending, by
	// member, the objects whose status changed since the member's last
	// pass.
	statuses      map[string][]gatewayapi.Status
	statusPending map[string]map[statusKey]bool
	// provisions are, by member, the Gateways whose Envoys eastwest
	// deploys; provisionPending the members whose changed since their
	// last pass (provision.go).
	provisions       map[string][]gatewayapi.Provision
	provisionPending map[string]bool
	provisionOpts    ProvisionOptions

	// writes counts every write made (MCS objects and Gateway API
	// statuses); passes the times every member had what it was owed.
	writes, passes atomic.Int64
	// running is set while Run runs: while this replica leads. A
	// replica that does not lead is told every change too (it may lead
	// next), but owes no write: its Pending and Lag are 0.
	running atomic.Bool

	// ledger, when set, is where the relay ports are recorded before a
	// member's pass writes them (relayledger.go); ledgerMu guards the
	// state last recorded (ledgerSeq), whether that worked, and when a
	// failure is tried again.
	ledger     *RelayLedger
	ledgerMu   sync.Mutex
	ledgerSeq  uint64
	ledgerOK   bool
	ledgerNext time.Time
}

// SetLedger makes every pass record the relay ports in ledger before it
// writes to the members. Set it before Run.
func (w *Writeback) SetLedger(l *RelayLedger) { w.ledger = l }

// writeLedger records the relay ports of state; without every member
// synced it only adds.
func (w *Writeback) writeLedger(ctx context.Context, state *mcs.State) error {
	if w.ledger == nil {
		return nil
	}
	complete := true
	for _, c := range state.Clusters {
		complete = complete && !w.members.SyncedAt(c.Member).IsZero()
	}
	return w.ledger.Write(ctx, state, complete)
}

// Writes is the number of writes made (creates, updates, deletes, and
// Gateway API status updates).
func (w *Writeback) Writes() int64 { return w.writes.Load() }

// Passes is the number of times the write-back caught up: every member
// (but those backing off) had every change, full pass and status it was
// owed written. A converged write-back still makes one at every resync,
// which writes nothing.
func (w *Writeback) Passes() int64 { return w.passes.Load() }

type member struct {
	log    *slog.Logger
	writes *atomic.Int64
	// conn is the member's connection the clients are of.
	conn    *source.Conn
	client  kubernetes.Interface
	dyn     dynamic.Interface
	version string // multicluster.x-k8s.io version served
	gw      gwclient.Interface
	// written are the objects whose status this replica wrote as leader.
	written map[statusKey]bool
	// provisionForbidden is set while the member does not let eastwest
	// manage its Gateways' Envoys (said once).
	provisionForbidden bool
	// caches are what the write-back compares with (caches.go), started
	// by a pass and stopped with its leadership (cachesDone).
	caches     *caches
	cachesDone <-chan struct{}
	// cachesFrom is the source's SyncedAt when the caches started.
	cachesFrom time.Time
	// imported is when this writer last wrote (or found in place) each
	// service's import in this member, until it removed it (importedMu:
	// a member's pass writes several services at once).
	importedMu sync.Mutex
	imported   map[mcs.ServiceKey]time.Time
	// sliceWrites are this writer's last writes of MCS EndpointSlices
	// that its cache has not shown yet, by namespace/name (slicesMu).
	slicesMu    sync.Mutex
	sliceWrites map[string]sliceWrite
	sweepAt     int // the records' count at which expired ones are swept
	// own are this writer's last writes of the other objects (imports,
	// exports' statuses, derived Services) the cache has not shown yet,
	// by resource/namespace/name (ownMu, caches.go).
	ownMu      sync.Mutex
	own        map[string]ownWrite
	ownSweepAt int
	// noSliceObjects is set once the member's ServiceImport CRD dropped
	// status.endpointSliceObjects (mcs-api before v0.5.2): it is then
	// not compared, or every pass would write it again.
	noSliceObjects atomic.Bool
}

// importStatusDiffers reports whether a ServiceImport's status lacks what
// the write-back wants of it.
func (m *member) importStatusDiffers(have, want *mcsv1b1.ServiceImport) bool {
	return !apiequality.Semantic.DeepEqual(have.Status.Clusters, want.Status.Clusters) ||
		!m.noSliceObjects.Load() && have.Status.EndpointSliceObjects != want.Status.EndpointSliceObjects
}

// noteSliceObjects notes, from the apiserver's answer to a status write
// that set status.endpointSliceObjects, whether the CRD keeps the field.
func (m *member) noteSliceObjects(wrote mcsv1b1.EndpointSliceObjectsStatus, got *mcsv1b1.ServiceImport) {
	if wrote != "" && got != nil && got.Status.EndpointSliceObjects == "" && !m.noSliceObjects.Swap(true) {
		m.log.Info("the member's ServiceImport CRD has no status.endpointSliceObjects (mcs-api before v0.5.2): not written")
	}
}

// wrote counts (and logs at debug level) a write.
func (m *member) wrote(verb, kind, namespace, name string) {
	m.writes.Add(1)
	m.log.Debug("write-back", "verb", verb, "kind", kind, "namespace", namespace, "name", name)
}

// ready starts the member's caches unless they run and the member's source
// has not re-synced since (after an outage the informers would resume only
// after their reflectors' backoff, up to 30 s, comparing with a stale cache
// meanwhile).
func (m *member) ready(ctx context.Context, sourceSynced time.Time) error {
	restart := m.caches == nil
	if c := m.caches; c != nil {
		select {
		case <-m.cachesDone:
			restart = true
		default:
			if sourceSynced.After(m.cachesFrom) {
				// The member's apiserver was away: the informers would
				// resume after their backoff (up to 30 s) and the
				// passes meanwhile compare with a stale cache.
				m.log.Debug("write-back: the member reconnected; reading its objects again")
				restart = true
			}
		}
		if restart {
			c.stop()
		}
	}
	if restart {
		m.caches, m.cachesDone, m.cachesFrom = nil, ctx.Done(), sourceSynced
		if err := m.startCaches(ctx); err != nil {
			return err
		}
	}
	return m.caches.synced(ctx)
}

// New returns a Writeback; it writes nothing until Run.
func New(members Members, log *slog.Logger) *Writeback {
	return &Writeback{log: log, members: members, clients: map[string]*member{}, queues: map[string]*queue{}, retries: map[string]*backoffState{}, wake: make(chan struct{}, 1)}
}

func (w *Writeback) wakeUp() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// client returns the member's writer on the member's current connection,
// nil for a member that has none (a YAML folder's). A member whose
// connection changed (its credentials rotated, its server moved) gets a
// new writer on the new one: its caches start again from it.
func (w *Writeback) client(name string) (*member, error) {
	conn, ok := w.members.Conn(name)
	w.clientsMu.Lock()
	defer w.clientsMu.Unlock()
	if !ok {
		w.drop(name)
		return nil, nil // not a Kubernetes member (YAML folder)
	}
	caps, ok := conn.Capabilities()
	if !ok {
		return nil, errNotConnected
	}
	old := w.clients[name]
	if old != nil && old.conn == conn && old.version == caps.MCSVersion {
		return old, nil
	}
	m := &member{conn: conn, client: conn.Core, dyn: conn.Dynamic, gw: conn.Gateway, version: caps.MCSVersion,
		log: w.log.With("member", name), writes: &w.writes}
	if old != nil {
		old.stopCaches()
		// What this replica wrote stays its to remove.
		m.written, m.provisionForbidden = old.written, old.provisionForbidden
		m.imported = maps.Clone(old.imported)
		m.log.Info("write-back moves to the member's new connection", "generation", conn.Generation, "mcsVersion", m.version)
	}
	w.clients[name] = m
	return m, nil
}

// errNotConnected is a member whose source has not discovered it yet.
var errNotConnected = errors.New("not connected yet: its source has not discovered what it serves")

// drop forgets a member that left, stopping its caches; called with
// w.clientsMu held, by the member's pass or while it has none.
func (w *Writeback) drop(name string) {
	if m := w.clients[name]; m != nil {
		m.stopCaches()
		delete(w.clients, name)
	}
}

// pruneClients drops the writers of the members that left the ClusterSet
// (their queues are gone, so no pass of theirs runs); called with w.mu
// held.
func (w *Writeback) pruneClients() {
	w.clientsMu.Lock()
	defer w.clientsMu.Unlock()
	for name := range w.clients {
		if w.queues[name] == nil {
			w.drop(name)
		}
	}
}

// stopCaches stops every member's caches (leadership ended, no pass
// running).
func (w *Writeback) stopCaches() {
	w.clientsMu.Lock()
	defer w.clientsMu.Unlock()
	for _, m := range w.clients {
		m.stopCaches()
	}
}

func (m *member) stopCaches() {
	if m.caches != nil {
		m.caches.stop()
		m.caches = nil
	}
}

func (m *member) gvr(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: mcsv1b1.GroupName, Version: m.version, Resource: resource}
}

// managedServices lists the services this member holds objects of ours for.
func (m *member) managedServices() map[mcs.ServiceKey]bool {
	out := map[mcs.ServiceKey]bool{}
	for _, o := range m.caches.imports.GetStore().List() {
		if o, ok := o.(metav1.Object); ok {
			out[mcs.ServiceKey{Namespace: o.GetNamespace(), Name: o.GetName()}] = true
		}
	}
	for _, o := range m.caches.slices.GetStore().List() {
		s := o.(*discoveryv1.EndpointSlice)
		out[mcs.ServiceKey{Namespace: s.Namespace, Name: s.Labels[mcsv1b1.LabelServiceName]}] = true
	}
	for _, o := range m.caches.services.GetStore().List() {
		s := o.(*corev1.Service)
		if k := (mcs.ServiceKey{Namespace: s.Namespace, Name: s.Labels[mcsv1b1.LabelServiceName]}); k.Name != "" && s.Name == DerivedName(k) {
			out[k] = true // a derived Service
		}
	}
	return out
}

// concerns reports whether a changed service may have something to write
// in the member: it imports or exports it, or this writer wrote (or found
// in place) its import there and has not removed it since. The member's
// other objects of ours were removed by the full pass this writer began
// its leadership with, and drift is repaired by every resync's full pass:
// so a member's pass skips the services it has nothing of. Comparing
// every changed service with every member's caches cost the leader
// members x changes (250 members x 1,000 services changed per pass under
// 300 changes/s).
func (m *member) concerns(c mcs.ClusterID, key mcs.ServiceKey, st *mcs.ServiceState) bool {
	if st != nil && (st.Import != nil && slices.Contains(st.Import.ImportedIn, c) || st.Export(c) != nil) {
		return true
	}
	m.importedMu.Lock()
	defer m.importedMu.Unlock()
	_, ok := m.imported[key]
	return ok
}

// importedKeys are the services whose import this writer wrote in the
// member and has not removed.
func (m *member) importedKeys() []mcs.ServiceKey {
	m.importedMu.Lock()
	defer m.importedMu.Unlock()
	return slices.Collect(maps.Keys(m.imported))
}

// noteImported records that the service's import is in the member (at),
// or that nothing of it is left there (zero at).
func (m *member) noteImported(key mcs.ServiceKey, at time.Time) {
	m.importedMu.Lock()
	defer m.importedMu.Unlock()
	if at.IsZero() {
		delete(m.imported, key)
		return
	}
	if m.imported == nil {
		m.imported = map[mcs.ServiceKey]time.Time{}
	}
	m.imported[key] = at
}

// reconcileService writes one service's objects in one member.
func (m *member) reconcileService(ctx context.Context, c mcs.ClusterID, key mcs.ServiceKey, st *mcs.ServiceState, clusters []mcs.ClusterInfo) error {
	var errs []error
	imported := st != nil && st.Import != nil && slices.Contains(st.Import.ImportedIn, c)
	if imported {
		m.noteImported(key, time.Now())
		errs = append(errs, m.ensureImport(ctx, c, st, clusters))
	} else if err := m.removeImport(ctx, key); err != nil {
		errs = append(errs, err)
	} else {
		m.noteImported(key, time.Time{}) // nothing of it left here
	}
	if st != nil {
		if es := st.Export(c); es != nil {
			errs = append(errs, m.ensureExportStatus(ctx, key, es, mcs.ReachableCondition(clusters, c, es.Generation)))
		}
	}
	return errors.Join(errs...)
}

func managedLabels(extra map[string]string) map[string]string {
	l := maps.Clone(extra)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelManagedBy] = ManagedByValue
	return l
}

// ensureImport writes the derived Service (ClusterSetIP), the
// ServiceImport with the derived IPs and status, and the EndpointSlices
// (those of other networks' members replaced by the relay slice).
func (m *member) ensureImport(ctx context.Context, c mcs.ClusterID, st *mcs.ServiceState, clusters []mcs.ClusterInfo) error {
	want := mcs.ImportObject(st, c)
	want.Labels = managedLabels(want.Labels)
	if st.Import.Type == mcsv1b1.ClusterSetIP {
		// Consumers of the MCS objects (the mcs-api controller's tools,
		// Gateway API implementations) find the derived Service by it.
		want.Annotations = maps.Clone(want.Annotations)
		if want.Annotations == nil {
			want.Annotations = map[string]string{}
		}
		want.Annotations[AnnotationDerivedService] = DerivedName(st.Key)
	}
	imp, err := m.applyImport(ctx, want)
	if err != nil {
		return err
	}
	derived := DerivedName(st.Key)
	if st.Import.Type == mcsv1b1.ClusterSetIP {
		ips, err := m.ensureDerived(ctx, st, imp)
		if err != nil {
			return err
		}
		if !slices.Equal(ips, want.Spec.IPs) {
			want.Spec.IPs = ips
			if _, err := m.applyImport(ctx, want); err != nil {
				return err
			}
		}
	} else if err := m.deleteDerived(ctx, st.Key); err != nil {
		return err
	}
	return m.ensureSlices(ctx, st.Key, derived, mcs.EndpointSlicesFor(st, c, clusters))
}

// applyImport creates or updates the ServiceImport's spec, labels,
// annotations and status, skipping writes that change nothing. IPs are
// kept as they are when want has none (they come from the derived Service).
func (m *member) applyImport(ctx context.Context, want *mcsv1b1.ServiceImport) (*mcsv1b1.ServiceImport, error) {
	res := m.dyn.Resource(m.gvr("serviceimports")).Namespace(want.Namespace)
	var out *mcsv1b1.ServiceImport
	err := cachedThenLive(func(cached bool) error {
		have, err := readOwn[mcsv1b1.ServiceImport](ctx, m, "serviceimports", res, m.caches.imports, cached, want.Namespace, want.Name)
		if apierrors.IsNotFound(err) {
			u, err := toUnstructured(want, m.version, "ServiceImport")
			if err != nil {
				return err
			}
			status := u.Object["status"]
			m.wrote("create", u.GetKind(), u.GetNamespace(), u.GetName())
			created, err := res.Create(ctx, u, metav1.CreateOptions{})
			if err != nil {
				return staleCache(err, cached)
			}
			m.noteOwn("serviceimports", created.GetNamespace(), created.GetName(), created.GetResourceVersion())
			created.Object["status"] = status
			m.wrote("updatestatus", created.GetKind(), created.GetNamespace(), created.GetName())
			if created, err = res.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				return err
			}
			m.noteOwn("serviceimports", created.GetNamespace(), created.GetName(), created.GetResourceVersion())
			out, err = fromUnstructured[mcsv1b1.ServiceImport](created)
			m.noteSliceObjects(want.Status.EndpointSliceObjects, out)
			return err
		}
		if err != nil {
			return err
		}
		if have.Labels[LabelManagedBy] != ManagedByValue {
			return fmt.Errorf("serviceimport %s/%s exists and is not managed by eastwest: left alone", want.Namespace, want.Name)
		}
		spec := want.Spec
		if len(spec.IPs) == 0 && spec.Type == mcsv1b1.ClusterSetIP {
			spec.IPs = have.Spec.IPs
		}
		out = have
		if !apiequality.Semantic.DeepEqual(have.Spec, spec) || !maps.Equal(have.Labels, want.Labels) || !maps.Equal(have.Annotations, want.Annotations) {
			have.Spec, have.Labels, have.Annotations = spec, want.Labels, want.Annotations
			if out, err = m.updateImport(ctx, res, have, false); err != nil {
				return staleCache(err, cached)
			}
		}
		if m.importStatusDiffers(out, want) {
			out.Status.Clusters, out.Status.EndpointSliceObjects = want.Status.Clusters, want.Status.EndpointSliceObjects
			out, err = m.updateImport(ctx, res, out, true)
			m.noteSliceObjects(want.Status.EndpointSliceObjects, out)
			return staleCache(err, cached)
		}
		return nil
	})
	return out, err
}

// updateImport writes a ServiceImport (its status when status is set)
// and returns the apiserver's answer.
func (m *member) updateImport(ctx context.Context, res dynamic.ResourceInterface, si *mcsv1b1.ServiceImport, status bool) (*mcsv1b1.ServiceImport, error) {
	u, err := toUnstructured(si, m.version, "ServiceImport")
	if err != nil {
		return nil, err
	}
	if status {
		m.wrote("updatestatus", u.GetKind(), u.GetNamespace(), u.GetName())
		u, err = res.UpdateStatus(ctx, u, metav1.UpdateOptions{})
	} else {
		m.wrote("update", u.GetKind(), u.GetNamespace(), u.GetName())
		u, err = res.Update(ctx, u, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, err
	}
	m.noteOwn("serviceimports", u.GetNamespace(), u.GetName(), u.GetResourceVersion())
	return fromUnstructured[mcsv1b1.ServiceImport](u)
}

// ensureDerived writes the ClusterIP Service behind a ClusterSetIP import
// and returns its IPs, one per family in the import's order.
func (m *member) ensureDerived(ctx context.Context, st *mcs.ServiceState, owner *mcsv1b1.ServiceImport) ([]string, error) {
	name := DerivedName(st.Key)
	svcs := m.client.CoreV1().Services(st.Key.Namespace)
	policy := corev1.IPFamilyPolicySingleStack
	if len(st.Import.IPFamilies) > 1 {
		policy = corev1.IPFamilyPolicyRequireDualStack
	}
	want := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: st.Key.Namespace,
			Labels: managedLabels(map[string]string{mcsv1b1.LabelServiceName: st.Key.Name}),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: mcsv1b1.GroupName + "/" + m.version, Kind: "ServiceImport", Name: owner.Name, UID: owner.UID,
			}},
		},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeClusterIP,
			IPFamilies:     st.Import.IPFamilies,
			IPFamilyPolicy: &policy,
		},
	}
	for _, p := range st.Import.Ports {
		want.Spec.Ports = append(want.Spec.Ports, corev1.ServicePort{
			Name: p.Name, Protocol: p.Protocol, Port: p.Port, AppProtocol: p.AppProtocol, TargetPort: intstr.FromInt32(p.Port),
		})
	}
	var out *corev1.Service
	err := cachedThenLive(func(cached bool) error {
		var cur *corev1.Service
		var err error
		if cached {
			cur, err = m.cachedService(ctx, st.Key.Namespace, name)
		} else {
			cur, err = svcs.Get(ctx, name, metav1.GetOptions{})
		}
		if apierrors.IsNotFound(err) {
			m.wrote("create", "Service", want.GetNamespace(), want.GetName())
			out, err = svcs.Create(ctx, want, metav1.CreateOptions{})
			m.noteOwnService(out, err)
			return staleCache(err, cached)
		}
		if err != nil {
			return err
		}
		if cur.Labels[LabelManagedBy] != ManagedByValue {
			return fmt.Errorf("service %s/%s exists and is not managed by eastwest: left alone", st.Key.Namespace, name)
		}
		if !slices.Equal(cur.Spec.IPFamilies, want.Spec.IPFamilies) {
			// Families cannot change in place: replace the Service.
			m.wrote("delete", "Service", st.Key.Namespace, name)
			if err := svcs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			m.wrote("create", "Service", want.GetNamespace(), want.GetName())
			out, err = svcs.Create(ctx, want, metav1.CreateOptions{})
			m.noteOwnService(out, err)
			return staleCache(err, cached)
		}
		out = cur
		if !apiequality.Semantic.DeepEqual(cur.Spec.Ports, want.Spec.Ports) || !maps.Equal(cur.Labels, want.Labels) {
			cur.Spec.Ports, cur.Labels, cur.OwnerReferences = want.Spec.Ports, want.Labels, want.OwnerReferences
			m.wrote("update", "Service", cur.GetNamespace(), cur.GetName())
			out, err = svcs.Update(ctx, cur, metav1.UpdateOptions{})
			m.noteOwnService(out, err)
		}
		return staleCache(err, cached)
	})
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, fam := range st.Import.IPFamilies {
		for _, ip := range out.Spec.ClusterIPs {
			if (fam == corev1.IPv6Protocol) == isV6(ip) {
				ips = append(ips, ip)
				break
			}
		}
	}
	return ips, nil
}

// noteOwnService records a write of a derived Service that succeeded.
func (m *member) noteOwnService(out *corev1.Service, err error) {
	if err == nil && out != nil {
		m.noteOwn("services", out.Namespace, out.Name, out.ResourceVersion)
	}
}

func isV6(ip string) bool {
	for _, c := range ip {
		if c == ':' {
			return true
		}
	}
	return false
}

func (m *member) deleteDerived(ctx context.Context, key mcs.ServiceKey) error {
	svcs := m.client.CoreV1().Services(key.Namespace)
	cur, err := m.cachedService(ctx, key.Namespace, DerivedName(key))
	if apierrors.IsNotFound(err) && m.mayBeBehind(key) {
		cur, err = svcs.Get(ctx, DerivedName(key), metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.Labels[LabelManagedBy] != ManagedByValue {
		return nil
	}
	m.wrote("delete", "Service", key.Namespace, cur.Name)
	if err := svcs.Delete(ctx, cur.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	m.noteOwn("services", key.Namespace, cur.Name, "")
	return nil
}

// ensureSlices makes the member's MCS EndpointSlices of a service exactly
// want (labelled for kube-proxy with the derived Service's name). It
// compares with the cache, and with the apiserver when a write shows the
// cache behind.
func (m *member) ensureSlices(ctx context.Context, key mcs.ServiceKey, derived string, want []*discoveryv1.EndpointSlice) error {
	have, err := m.cachedSlices(key)
	if err != nil {
		return err
	}
	// Removing what the cache does not show yet needs the apiserver's
	// word; otherwise the cache decides unless a write finds it behind.
	if len(want) > 0 || len(have) > 0 {
		err = m.syncSlices(ctx, key, derived, want, have)
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	list, err := m.client.DiscoveryV1().EndpointSlices(key.Namespace).List(ctx, metav1.ListOptions{LabelSelector: fmt.Sprintf("%s=%s,%s=%s", discoveryv1.LabelManagedBy, mcs.ControllerName, mcsv1b1.LabelServiceName, key.Name)})
	if err != nil {
		return err
	}
	have = have[:0]
	for i := range list.Items {
		d, err := digestSlice(&list.Items[i])
		if err != nil {
			return err
		}
		have = append(have, d.(*discoveryv1.EndpointSlice))
	}
	return m.syncSlices(ctx, key, derived, want, have)
}

// syncSlices writes the differences between want and have (slices in the
// cache's form: endpoints replaced by their digest).
func (m *member) syncSlices(ctx context.Context, key mcs.ServiceKey, derived string, want, have []*discoveryv1.EndpointSlice) error {
	api := m.client.DiscoveryV1().EndpointSlices(key.Namespace)
	current := map[string]*discoveryv1.EndpointSlice{}
	for _, s := range have {
		current[s.Name] = s
	}
	var errs []error
	wanted := map[string]bool{}
	for _, s := range want {
		wanted[s.Name] = true
		s.Labels = managedLabels(s.Labels)
		s.Labels[discoveryv1.LabelServiceName] = derived
		digest, err := endpointsDigest(s.Endpoints)
		if err != nil {
			return err
		}
		cur, ok := current[s.Name]
		delete(current, s.Name)
		seen := ""
		if ok {
			seen = cur.Annotations[digestKey]
		}
		content, err := sliceContent(digest, s)
		if err != nil {
			return err
		}
		// What this writer last wrote, while the cache does not show it
		// yet: the apiserver holds that, not what the cache shows.
		last, unseen := m.unseenSliceWrite(key.Namespace, s.Name, seen)
		switch {
		case unseen && last == content:
			continue // written
		case !ok && !unseen:
			m.wrote("create", "EndpointSlice", key.Namespace, s.Name)
			err = m.writeSlice(ctx, key.Namespace, s, false)
		case !ok:
			// Created by this writer, not in the cache yet: updated in
			// place (unconditionally, below).
			m.wrote("update", "EndpointSlice", key.Namespace, s.Name)
			err = m.writeSlice(ctx, key.Namespace, s, true)
		case unseen || seen != digest || !apiequality.Semantic.DeepEqual(cur.Ports, s.Ports) || !maps.Equal(cur.Labels, s.Labels):
			m.wrote("update", "EndpointSlice", key.Namespace, s.Name)
			cur.Endpoints, cur.Ports, cur.Labels = s.Endpoints, s.Ports, s.Labels
			delete(cur.Annotations, digestKey)
			// Unconditional (no resourceVersion): the slice is ours
			// alone, and a cache behind this writer's own last write
			// (its watch event not delivered yet, which a member's
			// back-to-back passes under a churn meet all the time) made
			// every such update a conflict and a LIST of the service's
			// slices.
			cur.ResourceVersion = ""
			err = m.writeSlice(ctx, key.Namespace, cur, true)
		default:
			m.forgetSliceWrite(key.Namespace, s.Name)
			continue
		}
		if err != nil {
			m.forgetSliceWrite(key.Namespace, s.Name)
			errs = append(errs, err)
			continue
		}
		m.noteSliceWrite(key.Namespace, s.Name, key.Name, seen, content)
	}
	for name, cur := range current {
		seen := cur.Annotations[digestKey]
		if last, unseen := m.unseenSliceWrite(key.Namespace, name, seen); unseen && last == "" {
			continue // deleted already
		}
		m.wrote("delete", "EndpointSlice", key.Namespace, name)
		if err := api.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			m.forgetSliceWrite(key.Namespace, name)
			errs = append(errs, err)
			continue
		}
		m.noteSliceWrite(key.Namespace, name, key.Name, seen, "")
	}
	// Slices this writer created that the cache does not show yet and
	// that are no longer wanted.
	for _, name := range m.unseenCreates(key, wanted) {
		m.wrote("delete", "EndpointSlice", key.Namespace, name)
		if err := api.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
		m.forgetSliceWrite(key.Namespace, name)
	}
	return errors.Join(errs...)
}

// sliceWrite is this writer's last write of an MCS EndpointSlice of a
// service: the digest of the endpoints the cache showed before it (""
// when the cache had no slice), what was written (sliceContent; "" for a
// delete) and when.
type sliceWrite struct {
	service, before, wrote string
	at                     time.Time
}

// sliceContent identifies what a slice write writes: its endpoints'
// digest, ports and labels.
func sliceContent(digest string, s *discoveryv1.EndpointSlice) (string, error) {
	b, err := json.Marshal(struct {
		Ports  []discoveryv1.EndpointPort
		Labels map[string]string
	}{s.Ports, s.Labels})
	return digest + string(b), err
}

// unseenSliceWrite returns what this writer last wrote to the slice
// ("" for a delete) when that was less than cacheBehind ago and the cache
// still shows what was there before (seen: its watch event has not come
// yet). A member's pass right after its previous one meets this all the
// time under a churn: compared with the cache alone, a change undone
// between two passes (the cache still showing the state before the
// first) was never written back, and the member kept the first pass's
// write until the next resync. Anything else the cache shows (the write
// arrived, or another change) is compared as usual.
func (m *member) unseenSliceWrite(namespace, name, seen string) (wrote string, unseen bool) {
	m.slicesMu.Lock()
	defer m.slicesMu.Unlock()
	w, ok := m.sliceWrites[namespace+"/"+name]
	if ok && (w.before != seen || time.Since(w.at) > cacheBehind) {
		delete(m.sliceWrites, namespace+"/"+name) // the cache moved on
		return "", false
	}
	return w.wrote, ok
}

// unseenCreates are the slices of the service this writer created less
// than cacheBehind ago, that its cache does not show yet, and that are
// not wanted.
func (m *member) unseenCreates(key mcs.ServiceKey, wanted map[string]bool) []string {
	m.slicesMu.Lock()
	defer m.slicesMu.Unlock()
	var out []string
	for k, w := range m.sliceWrites {
		ns, name, _ := strings.Cut(k, "/")
		if ns == key.Namespace && w.service == key.Name && w.before == "" && w.wrote != "" && !wanted[name] && time.Since(w.at) <= cacheBehind {
			out = append(out, name)
		}
	}
	return out
}

func (m *member) noteSliceWrite(namespace, name, service, before, wrote string) {
	m.slicesMu.Lock()
	defer m.slicesMu.Unlock()
	now := time.Now()
	if m.sliceWrites == nil {
		m.sliceWrites = map[string]sliceWrite{}
	}
	if len(m.sliceWrites) >= m.sweepAt {
		// A record is read again only when its service is written
		// again: those of services the member no longer has anything
		// of (a deleted export's slices) would stay for ever. Swept
		// when the records have doubled since the last sweep, so the
		// cost per write stays constant and they are bounded by twice
		// the slices written in cacheBehind.
		maps.DeleteFunc(m.sliceWrites, func(_ string, w sliceWrite) bool { return now.Sub(w.at) > cacheBehind })
		m.sweepAt = max(256, 2*len(m.sliceWrites))
	}
	m.sliceWrites[namespace+"/"+name] = sliceWrite{service: service, before: before, wrote: wrote, at: now}
}

func (m *member) forgetSliceWrite(namespace, name string) {
	m.slicesMu.Lock()
	defer m.slicesMu.Unlock()
	delete(m.sliceWrites, namespace+"/"+name)
}

// writeSlice creates or updates an MCS EndpointSlice. The apiserver's
// answer (the slice again, all its endpoints) is not decoded: nothing
// reads it, and the slice's watch event brings it to the cache anyway.
// On every endpoint change that was the write-back's largest allocation.
func (m *member) writeSlice(ctx context.Context, namespace string, s *discoveryv1.EndpointSlice, update bool) error {
	rc := m.client.DiscoveryV1().RESTClient()
	req := rc.Post()
	if update {
		req = rc.Put().Name(s.Name)
	}
	return req.Namespace(namespace).Resource("endpointslices").Body(s).Do(ctx).Error()
}

// removeImport deletes everything eastwest wrote for a service in a member.
// cacheBehind bounds how long after this writer wrote an import its
// caches may not show it yet (their watch's delivery; seconds at most).
const cacheBehind = 30 * time.Second

// mayBeBehind reports whether a service's import or derived Service
// missing from the member's caches may yet exist: this writer wrote it
// within cacheBehind. Any other miss is trusted: the caches hold every
// object the write-back manages (they are label-selected, and synced
// before a pass), and a full pass repairs the rest from them at every
// resync. Asking the apiserver on every miss cost two GETs per service
// per member that does not import it, at the member's 50 requests per
// second: at 250 members of which 10 import a service, 480 GETs per
// changed service, and a write-back that never caught up (issue 29).
func (m *member) mayBeBehind(key mcs.ServiceKey) bool {
	m.importedMu.Lock()
	at, ok := m.imported[key]
	m.importedMu.Unlock()
	return ok && time.Since(at) < cacheBehind
}

func (m *member) removeImport(ctx context.Context, key mcs.ServiceKey) error {
	var errs []error
	errs = append(errs, m.ensureSlices(ctx, key, DerivedName(key), nil), m.deleteDerived(ctx, key))
	res := m.dyn.Resource(m.gvr("serviceimports")).Namespace(key.Namespace)
	cur, err := readOwn[mcsv1b1.ServiceImport](ctx, m, "serviceimports", res, m.caches.imports, true, key.Namespace, key.Name)
	if apierrors.IsNotFound(err) && m.mayBeBehind(key) {
		cur, err = read[mcsv1b1.ServiceImport](ctx, res, nil, false, key.Namespace, key.Name)
	}
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		errs = append(errs, err)
	case cur.GetLabels()[LabelManagedBy] == ManagedByValue:
		m.wrote("delete", "ServiceImport", key.Namespace, key.Name)
		if err := res.Delete(ctx, key.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		} else {
			m.noteOwn("serviceimports", key.Namespace, key.Name, "")
		}
	}
	return errors.Join(errs...)
}

// ensureExportStatus sets the export's Valid, Ready and Conflict
// conditions, keeping each one's lastTransitionTime while its status does
// not change, and removing our condition types the merge no longer sets.
func (m *member) ensureExportStatus(ctx context.Context, key mcs.ServiceKey, es *mcs.ExportStatus, reachable *metav1.Condition) error {
	res := m.dyn.Resource(m.gvr("serviceexports")).Namespace(key.Namespace)
	return cachedThenLive(func(cached bool) error {
		se, err := readOwn[mcsv1b1.ServiceExport](ctx, m, "serviceexports", res, m.caches.exports, cached, key.Namespace, key.Name)
		if cached && apierrors.IsNotFound(err) {
			// Not in the cache yet is not gone: the apiserver says.
			se, err = read[mcsv1b1.ServiceExport](ctx, res, nil, false, key.Namespace, key.Name)
		}
		if apierrors.IsNotFound(err) {
			return nil // unexported meanwhile
		}
		if err != nil {
			return err
		}
		conds := slices.Clone(se.Status.Conditions)
		for _, t := range []mcsv1b1.ServiceExportConditionType{mcsv1b1.ServiceExportConditionValid, mcsv1b1.ServiceExportConditionReady, mcsv1b1.ServiceExportConditionConflict} {
			if es.Condition(t) == nil {
				meta.RemoveStatusCondition(&conds, string(t))
			}
		}
		for _, c := range es.Conditions {
			c.ObservedGeneration = se.Generation
			meta.SetStatusCondition(&conds, c)
		}
		// Across networks: whether the others reach this member.
		if reachable != nil {
			c := *reachable
			c.ObservedGeneration = se.Generation
			meta.SetStatusCondition(&conds, c)
		} else {
			meta.RemoveStatusCondition(&conds, mcs.ConditionReachable)
		}
		if apiequality.Semantic.DeepEqual(conds, se.Status.Conditions) {
			return nil
		}
		se.Status.Conditions = conds
		u, err := toUnstructured(se, m.version, "ServiceExport")
		if err != nil {
			return err
		}
		m.wrote("updatestatus", u.GetKind(), u.GetNamespace(), u.GetName())
		got, err := res.UpdateStatus(ctx, u, metav1.UpdateOptions{})
		if err == nil {
			m.noteOwn("serviceexports", got.GetNamespace(), got.GetName(), got.GetResourceVersion())
		}
		return staleCache(err, cached)
	})
}

func toUnstructured(o runtime.Object, version, kind string) (*unstructured.Unstructured, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetAPIVersion(mcsv1b1.GroupName + "/" + version)
	u.SetKind(kind)
	return u, nil
}
