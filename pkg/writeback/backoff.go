package writeback

import (
	"maps"
	"slices"
	"time"
)

// A member whose pass fails (unreachable, credentials refused, a CRD
// missing, a write refused) is tried again after its own backoff, from
// minRetry doubling to maxRetry, in full (every service, status and
// provisioned object of it, so that nothing pending is lost while it
// waits). Meanwhile the other members' passes go on without it, and it
// is not redone when they are. Its source syncing again (Members.OnSynced:
// the apiserver is back, its connection was rebuilt) makes it due at once.
const (
	minRetry = time.Second
	maxRetry = 2 * time.Minute
)

// backoffState is a member's backoff.
type backoffState struct {
	backoff  time.Duration
	at       time.Time
	failures int
	err      string
}

// MemberRetry is a member the write-back is backing off from, as
// /debug/writeback and `xds status` show it.
type MemberRetry struct {
	Member string `json:"member"`
	// Failures counts its passes failed in a row.
	Failures  int       `json:"failures"`
	LastError string    `json:"lastError"`
	RetryAt   time.Time `json:"retryAt"`
}

// failedLocked backs off from a member whose pass failed; called with
// w.mu held.
func (w *Writeback) failedLocked(name string, err error, now time.Time) {
	r := w.retries[name]
	if r == nil {
		r = &backoffState{backoff: minRetry}
		w.retries[name] = r
	} else {
		r.backoff = min(2*r.backoff, maxRetry)
	}
	r.failures++
	r.err = err.Error()
	r.at = now.Add(r.backoff)
	w.log.Warn("write-back to the member incomplete, retrying it alone", "member", name, "retryIn", r.backoff, "failures", r.failures, "err", err)
}

// recoveredLocked forgets the backoff of a member whose pass passed;
// called with w.mu held.
func (w *Writeback) recoveredLocked(name string) {
	if r := w.retries[name]; r != nil {
		w.log.Info("write-back to the member recovered", "member", name, "failures", r.failures)
		delete(w.retries, name)
	}
}

// MemberSynced makes a member backing off due at once: its source has
// just synced with its apiserver (back after an outage, or on a new
// connection), so the write-back need not wait out its backoff.
func (w *Writeback) MemberSynced(member string) {
	w.mu.Lock()
	r := w.retries[member]
	if r != nil {
		r.at = time.Time{}
	}
	w.mu.Unlock()
	if r != nil {
		w.wakeUp()
	}
}

// OnMemberFailed makes f be told each member pass that failed (a metric).
// Set it before Run.
func (w *Writeback) OnMemberFailed(f func(member string)) { w.onFailed = f }

// Retries returns the members the write-back backs off from, sorted.
func (w *Writeback) Retries() []MemberRetry {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]MemberRetry, 0, len(w.retries))
	for _, name := range slices.Sorted(maps.Keys(w.retries)) {
		r := w.retries[name]
		out = append(out, MemberRetry{Member: name, Failures: r.failures, LastError: r.err, RetryAt: r.at})
	}
	return out
}
