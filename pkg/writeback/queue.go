package writeback

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// Each member is written by a pass of its own, which starts as soon as its
// previous one ended: no member waits for another. The changes wait in one
// log, and each member has a cursor into it; a member's pass takes every
// change since its cursor, each service once however often it changed
// (coalesced per member). A pass over every member at once, as before,
// waited for the slowest member: under a churn of 300 changes a second at
// 250 members each pass coalesced 4-5 s of changes and the write-back
// stayed up to a minute behind (docs/scale.md).
//
// A member owes a full pass (every service, status and provisioned object
// of it) when it joins, when its ClusterInfo changes, at every resync, when
// this replica becomes the leader, and after a failed pass (retried after
// its backoff, backoff.go). A full pass writes the services changed since
// its cursor first, then the rest.
//
// A change to one member's ClusterInfo (it joined, left, failed, came
// back, its gateways moved) is scoped: that member owes a full pass, and
// the others the services it exports (their MCS EndpointSlices, relay
// slices among them, name its endpoints or its gateways). Only a change
// to the set of networks (which turns every export's Reachable condition
// on or off) makes every member's pass a full one. Before, any such change
// made the next pass full everywhere: every member times every service,
// 2.5 million at 500 members, minutes here, and a 500-member cold start
// never left its full passes.

// queue is one member's place in the write-back; every field is guarded
// by Writeback.mu.
type queue struct {
	name string
	// cursor is the sequence number of the first change not yet taken.
	cursor uint64
	// full is set while the member owes a full pass; fullSince is when a
	// change (a join, a ClusterInfo change) made it owe one, zero for a
	// resync or a retry (not a change waiting: Lag).
	full      bool
	fullSince time.Time
	// running is set while the member's pass runs; runSince is when the
	// oldest change it writes came; left counts the services it has left.
	running  bool
	runSince time.Time
	left     int
	// provisionRetry is set while the member's Gateways wait for it to
	// let eastwest deploy their Envoys: tried again with its next pass.
	provisionRetry bool
}

// change is one service's change in the log.
type change struct {
	key mcs.ServiceKey
	at  time.Time
}

// memberWork is what one member's pass does.
type memberWork struct {
	state *mcs.State
	// seq numbers state among the published states (the relay ledger is
	// written once per state, before the first pass that writes it).
	seq  uint64
	full bool
	// keys are the services changed since the member's last pass.
	keys []mcs.ServiceKey
	// statuses are the Gateway API statuses to write (all of them on a
	// full pass), pendingStatuses the ones that changed.
	statuses        []gatewayapi.Status
	pendingStatuses map[statusKey]bool
	// provision is set when the member's Gateways' Envoys are to be
	// brought to provisions.
	provision  bool
	provisions []gatewayapi.Provision
}

// Changed is told about each published state and the services that
// changed; clusters is set when the members or their ClusterInfo changed.
func (w *Writeback) Changed(state *mcs.State, services []mcs.ServiceKey, clusters bool) {
	now := time.Now()
	w.mu.Lock()
	old := w.state
	w.state = state
	w.stateSeq++
	present := make(map[string]bool, len(state.Clusters))
	for _, c := range state.Clusters {
		present[c.Member] = true
		if w.queues[c.Member] == nil {
			// A member new to the write-back owes everything.
			w.queues[c.Member] = &queue{name: c.Member, cursor: w.head(), full: true, fullSince: now}
		}
	}
	for name, q := range w.queues {
		if !present[name] && !q.running && len(w.statuses[name]) == 0 && len(w.provisions[name]) == 0 {
			delete(w.queues, name)
			w.departed = true
		}
	}
	if clusters && old != nil {
		full, extra := clusterScope(old, state)
		for name := range full {
			if q := w.queues[name]; q != nil {
				q.full = true
				if q.fullSince.IsZero() {
					q.fullSince = now
				}
			}
		}
		services = append(services, extra...)
	}
	for _, k := range services {
		w.changes = append(w.changes, change{key: k, at: now})
	}
	w.mu.Unlock()
	w.wakeUp()
}

// clusterScope is what a change of the members' ClusterInfo asks of the
// write-back: the members that owe a full pass (those that joined or whose
// ClusterInfo changed; every member when the set of networks changed) and
// the services the others write again (those a changed member exports,
// before or after).
func clusterScope(before, after *mcs.State) (full map[string]bool, services []mcs.ServiceKey) {
	full = map[string]bool{}
	was := map[string]*mcs.ClusterInfo{}
	for i := range before.Clusters {
		was[before.Clusters[i].Member] = &before.Clusters[i]
	}
	ids := map[mcs.ClusterID]bool{}
	for i := range after.Clusters {
		c := &after.Clusters[i]
		old := was[c.Member]
		delete(was, c.Member)
		if old != nil && apiequality.Semantic.DeepEqual(*old, *c) {
			continue
		}
		full[c.Member] = true
		ids[c.ID] = true
		if old != nil {
			ids[old.ID] = true
		}
	}
	for _, old := range was { // left
		ids[old.ID] = true
	}
	if !maps.Equal(networks(before.Clusters), networks(after.Clusters)) {
		// Every export's Reachable condition says whether the ClusterSet
		// spans networks.
		for _, c := range after.Clusters {
			full[c.Member] = true
		}
		return full, nil
	}
	delete(ids, "")
	if len(ids) == 0 {
		return full, nil
	}
	seen := map[mcs.ServiceKey]bool{}
	for _, s := range []*mcs.State{before, after} {
		for key, st := range s.Services.All() {
			if !seen[key] && slices.ContainsFunc(st.Backends, func(b mcs.ClusterBackend) bool { return ids[b.Cluster] }) {
				seen[key] = true
				services = append(services, key)
			}
		}
	}
	slices.SortFunc(services, mcs.ServiceKey.Compare)
	return full, services
}

// networks are the networks of the members in the merge.
func networks(infos []mcs.ClusterInfo) map[string]bool {
	out := map[string]bool{}
	for _, c := range infos {
		if c.ID != "" {
			out[c.Network] = true
		}
	}
	return out
}

// head is the sequence number the next change gets; called with w.mu held.
func (w *Writeback) head() uint64 { return w.base + uint64(len(w.changes)) }

// queueLocked makes a member's queue when missing (a member told Gateway
// API statuses before its first state); called with w.mu held.
func (w *Writeback) queueLocked(name string) {
	if w.queues[name] == nil {
		w.queues[name] = &queue{name: name, cursor: w.head()}
	}
}

// markAllLocked makes every member owe a full pass (a new leader, a
// resync); called with w.mu held.
func (w *Writeback) markAllLocked() {
	for _, q := range w.queues {
		q.full = true
	}
	w.dirty = true
}

// hasWorkLocked reports whether a member has something to write.
func (w *Writeback) hasWorkLocked(q *queue) bool {
	return q.full || q.cursor < w.head() || len(w.statusPending[q.name]) > 0 || w.provisionPending[q.name]
}

// backingOffLocked reports whether a member waits for its retry at now.
func (w *Writeback) backingOffLocked(name string, now time.Time) bool {
	r := w.retries[name]
	return r != nil && r.at.After(now)
}

// Run reconciles whenever something changed, until ctx ends, and every
// resync period in any case (repairing what others changed). Each member
// is written on its own, up to memberWriters at once: a member's writes
// wait on its own client-side rate limit (memberQPS), never on another
// member's. A member whose pass fails is tried again after its own
// backoff, in full; the others are not held up or redone.
func (w *Writeback) Run(ctx context.Context, resync time.Duration) {
	w.running.Store(true)
	defer w.running.Store(false)
	t := time.NewTicker(resync)
	defer t.Stop()
	retryTimer := time.NewTimer(time.Hour)
	retryTimer.Stop()
	defer retryTimer.Stop()
	var wg sync.WaitGroup
	defer w.stopCaches()
	defer wg.Wait() // before the caches stop
	// A new leader repairs everything first.
	w.mu.Lock()
	w.markAllLocked()
	w.mu.Unlock()
	w.wakeUp()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.mu.Lock()
			w.markAllLocked()
			w.mu.Unlock()
		case <-retryTimer.C:
		case <-w.wake:
		}
		if next, ok := w.schedule(ctx, &wg, time.Now()); ok {
			retryTimer.Reset(time.Until(next))
		}
	}
}

// slowPass is how long a member's pass may take before it is logged.
const slowPass = 10 * time.Second

// memberWriters bounds the members written at once. (256 measured the
// same as 64 in BenchmarkScale at 250 members: the write-back's lag under
// the churn there is the saturated machine's.)
const memberWriters = 64

// schedule starts the passes of the members that have something to write,
// the longest waiting first, and returns when the next retry is due.
func (w *Writeback) schedule(ctx context.Context, wg *sync.WaitGroup, now time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.departed {
		w.departed = false
		w.pruneClients()
	}
	var due []*queue
	var next time.Time
	for name, q := range w.queues {
		if q.running {
			continue
		}
		if w.backingOffLocked(name, now) {
			if at := w.retries[name].at; next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		if w.hasWorkLocked(q) {
			due = append(due, q)
		}
	}
	slices.SortFunc(due, func(a, b *queue) int {
		return cmp.Or(cmp.Compare(a.cursor, b.cursor), cmp.Compare(a.name, b.name))
	})
	for _, q := range due {
		if w.workers >= memberWriters || w.state == nil {
			break
		}
		work := w.takeLocked(q)
		w.workers++
		wg.Go(func() {
			began, writes := time.Now(), w.writes.Load()
			err := w.memberPass(ctx, q, work)
			if took := time.Since(began); took > slowPass {
				w.log.Info("write-back: a slow pass", "member", q.name, "took", took.Round(time.Millisecond), "full", work.full,
					"changed", len(work.keys), "writesMeanwhile", w.writes.Load()-writes)
			}
			w.finish(ctx, q, err)
		})
	}
	if w.workers == 0 && (len(due) == 0 || w.state == nil) && w.dirty {
		// Every member has what it is owed (but those backing off).
		w.dirty = false
		w.passes.Add(1)
	}
	w.truncateLocked(now)
	return next, !next.IsZero()
}

// takeLocked hands a member's pending work to a pass.
func (w *Writeback) takeLocked(q *queue) memberWork {
	work := memberWork{state: w.state, seq: w.stateSeq, full: q.full}
	from := max(q.cursor, w.base)
	since := q.fullSince
	if from < w.head() {
		if at := w.changes[from-w.base].at; since.IsZero() || at.Before(since) {
			since = at
		}
		seen := map[mcs.ServiceKey]bool{}
		for _, c := range w.changes[from-w.base:] {
			if !seen[c.key] {
				seen[c.key] = true
				work.keys = append(work.keys, c.key)
			}
		}
	}
	q.cursor, q.full, q.fullSince = w.head(), false, time.Time{}
	q.running, q.runSince = true, since
	q.left = len(work.keys)
	if work.full {
		q.left = max(q.left, w.state.Services.Len())
	}
	work.statuses = w.statuses[q.name]
	work.pendingStatuses = w.statusPending[q.name]
	delete(w.statusPending, q.name)
	if w.provisionOpts.Enabled {
		work.provision = w.provisionPending[q.name] || q.provisionRetry || work.full && len(w.provisions[q.name]) > 0
		work.provisions = w.provisions[q.name]
	}
	delete(w.provisionPending, q.name)
	q.provisionRetry = false
	w.dirty = true
	return work
}

// truncateLocked drops the changes every member has taken. A member
// backing off does not hold the log: it owes a full pass, which writes
// everything anyway (one that cannot be reached for hours would hold it
// for hours).
func (w *Writeback) truncateLocked(now time.Time) {
	low := w.head()
	for name, q := range w.queues {
		if !w.backingOffLocked(name, now) {
			low = min(low, q.cursor)
		}
	}
	if low <= w.base {
		return
	}
	if low == w.head() {
		w.changes = w.changes[:0]
	} else {
		// Kept in place: the log is short while the write-back keeps up.
		w.changes = append(w.changes[:0], w.changes[low-w.base:]...)
	}
	w.base = low
}

// finish ends a member's pass: a failed one backs off (and owes a full
// pass at its retry), a passed one forgets its backoff.
func (w *Writeback) finish(ctx context.Context, q *queue, err error) {
	now := time.Now()
	w.mu.Lock()
	w.workers--
	q.running, q.runSince, q.left = false, time.Time{}, 0
	failed := false
	switch {
	case ctx.Err() != nil:
		// Leadership ended: the next leader repairs everything.
	case err != nil:
		q.full = true
		w.failedLocked(q.name, err, now)
		failed = true
	default:
		w.recoveredLocked(q.name)
	}
	w.mu.Unlock()
	if failed && w.onFailed != nil {
		w.onFailed(q.name)
	}
	w.wakeUp()
}

// progress notes that a member's pass has done one more service.
func (w *Writeback) progress(q *queue) {
	w.mu.Lock()
	q.left = max(0, q.left-1)
	w.mu.Unlock()
}

// memberPass writes one member: its services (every one on a full pass,
// the changed first), its Gateway API statuses and its Gateways' Envoys.
func (w *Writeback) memberPass(ctx context.Context, q *queue, work memberWork) error {
	name := q.name
	m, err := w.client(name)
	if err != nil || m == nil {
		return err // nil: not a Kubernetes member (a YAML folder)
	}
	var info mcs.ClusterInfo
	for _, c := range work.state.Clusters {
		if c.Member == name {
			info = c
		}
	}
	var errs []error
	if info.ID != "" {
		errs = append(errs, w.writeServices(ctx, q, m, info, work))
	}
	if work.full || len(work.pendingStatuses) > 0 {
		errs = append(errs, m.writeStatuses(ctx, work.statuses, work.pendingStatuses, work.full, time.Now()))
	}
	if work.provision && info.ID != "" {
		retry, err := w.provisionMember(ctx, m, info, work.provisions)
		if retry {
			w.mu.Lock()
			q.provisionRetry = true
			w.mu.Unlock()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// writeServices writes a member's MCS objects of the services of work.
func (w *Writeback) writeServices(ctx context.Context, q *queue, m *member, info mcs.ClusterInfo, work memberWork) error {
	if err := m.ready(ctx, w.members.SyncedAt(info.Member)); err != nil {
		return err
	}
	// The relay ports are recorded before the relay slices that use them
	// are written.
	w.writeLedgerFor(ctx, work.seq, work.state)
	todo := work.keys
	if work.full {
		// Every service the member has something of: those it imports
		// or exports, and every one whose objects of ours its caches
		// hold (or this writer wrote). The changed first. Any other
		// service has nothing to write there: comparing each with the
		// caches cost members x services per full pass (625,000 at 250
		// members, 2.5 million at 500), at every resync and leader
		// change.
		held := m.managedServices()
		for _, k := range m.importedKeys() {
			held[k] = true
		}
		seen := make(map[mcs.ServiceKey]bool, len(todo))
		todo = todo[:0:0]
		add := func(k mcs.ServiceKey) {
			if !seen[k] {
				seen[k] = true
				todo = append(todo, k)
			}
		}
		for _, k := range work.keys {
			if held[k] || m.concerns(info.ID, k, work.state.Services.Get(k)) {
				add(k)
			}
		}
		for k, st := range work.state.Services.All() {
			if m.concerns(info.ID, k, st) {
				add(k)
			}
		}
		for k := range held {
			add(k)
		}
		w.mu.Lock()
		q.left = len(todo)
		w.mu.Unlock()
	}
	// One service after the other: with 8 at once in each member, the
	// simulated members of BenchmarkScale (one process for 250 of them)
	// were asked 2,000 requests at once and the churn they make fell from
	// 300 changes/s to 68; the members' writes here are few (about one
	// per change), and a member's own client-side limit bounds them
	// anyway.
	var errs []error
	for _, key := range todo {
		if ctx.Err() != nil {
			break
		}
		st := work.state.Services.Get(key)
		if work.full || m.concerns(info.ID, key, st) {
			if err := m.reconcileService(ctx, info.ID, key, st, work.state.Clusters); err != nil {
				errs = append(errs, fmt.Errorf("service %s: %w", key, err))
			}
		}
		w.progress(q)
	}
	return errors.Join(errs...)
}

// ledgerRetry is how soon a relay ledger that could not be written is
// tried again.
const ledgerRetry = 10 * time.Second

// writeLedgerFor records the relay ports of the state numbered seq, once
// per state (and again ledgerRetry after a failure): every member's pass
// that writes a state's relay slices waits for it. A ledger that cannot
// be written does not stop the members' passes.
func (w *Writeback) writeLedgerFor(ctx context.Context, seq uint64, state *mcs.State) {
	if w.ledger == nil {
		return
	}
	w.ledgerMu.Lock()
	defer w.ledgerMu.Unlock()
	if seq < w.ledgerSeq || seq == w.ledgerSeq && (w.ledgerOK || time.Now().Before(w.ledgerNext)) {
		return
	}
	err := w.writeLedger(ctx, state)
	w.ledgerSeq, w.ledgerOK, w.ledgerNext = seq, err == nil, time.Now().Add(ledgerRetry)
	if err != nil && ctx.Err() == nil {
		w.log.Warn("relay ledger not written: a restart or a new leader may move relay ports", "err", err)
	}
}

// Pending is the number of services whose objects are not written yet
// in some member: the changes not yet taken, and those a running pass has
// left (the member furthest behind counts), and every service while a
// member owes a full pass (joined, its retry due, a resync).
func (w *Writeback) Pending() int {
	if !w.running.Load() {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[mcs.ServiceKey]bool{}
	for _, c := range w.changes {
		seen[c.key] = true
	}
	n := len(seen)
	left, running := 0, false
	for _, q := range w.queues {
		if q.full && w.state != nil {
			// Until its full pass, every service may be unwritten there
			// (a member just back from an outage: TestLifecycle 14).
			n = max(n, w.state.Services.Len())
		}
		if q.running {
			running = true
			left = max(left, q.left)
		}
	}
	n += left
	if n == 0 && running {
		n = 1 // statuses or provisioning left
	}
	return n
}

// Lag is how long the oldest change not yet written to every member has
// waited: 0 when the write-back has caught up. Under a churn the members'
// client-side rate limits (memberQPS) cannot absorb, it grows, where
// Pending alone may stay small (a member's pass coalesces the changes of
// a service, so a hot service counts once however often it changes). A
// member backing off is left out: its retry is reported on its own
// (Retries, eastwest_writeback_member_failures_total).
func (w *Writeback) Lag(now time.Time) time.Duration {
	if !w.running.Load() {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var oldest time.Time
	older := func(t time.Time) {
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	for name, q := range w.queues {
		if w.backingOffLocked(name, now) {
			continue
		}
		older(q.runSince)
		older(q.fullSince)
		if from := max(q.cursor, w.base); from < w.head() {
			older(w.changes[from-w.base].at)
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return now.Sub(oldest)
}
