package writeback

import (
	"errors"
	"fmt"
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

// passScope is what one pass does: every member in full (all), or the
// pending changes, with the members due for a retry in full and those
// still backing off left out.
type passScope struct {
	all bool
	// due are the members retried in full; skip, those backing off.
	due, skip map[string]bool
}

// full reports whether a member's pass covers everything of it.
func (s passScope) full(member string) bool { return s.all || s.due[member] }

// scopeLocked splits the members backing off into those due at now and
// those still waiting; called with w.mu held.
func (w *Writeback) scopeLocked(all bool, now time.Time) passScope {
	s := passScope{all: all, due: map[string]bool{}, skip: map[string]bool{}}
	for name, r := range w.retries {
		switch {
		case r.at.After(now):
			s.skip[name] = true
		case name == "":
			// An error of no one member's: everything again.
			s.all = true
		default:
			s.due[name] = true
		}
	}
	return s
}

// settle notes the members that failed the pass (err, from inMember) and
// forgets the backoff of those that passed; it returns when the next
// retry is due, if any.
func (w *Writeback) settle(scope passScope, err error, now time.Time) (time.Time, bool) {
	failed := map[string]error{}
	collectMembers(err, failed)
	w.mu.Lock()
	defer w.mu.Unlock()
	for name := range w.retries {
		if _, bad := failed[name]; !bad && !scope.skip[name] {
			w.log.Info("write-back to the member recovered", "member", name, "failures", w.retries[name].failures)
			delete(w.retries, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(failed)) {
		r := w.retries[name]
		if r == nil {
			r = &backoffState{backoff: minRetry}
			w.retries[name] = r
		} else {
			r.backoff = min(2*r.backoff, maxRetry)
		}
		r.failures++
		r.err = failed[name].Error()
		r.at = now.Add(r.backoff)
		w.log.Warn("write-back to the member incomplete, retrying it alone", "member", name, "retryIn", r.backoff, "failures", r.failures, "err", failed[name])
		if w.onFailed != nil {
			w.onFailed(name)
		}
	}
	var next time.Time
	for _, r := range w.retries {
		if next.IsZero() || r.at.Before(next) {
			next = r.at
		}
	}
	return next, !next.IsZero()
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

// memberError is an error of one member's pass.
type memberError struct {
	member string
	err    error
}

func (e *memberError) Error() string { return fmt.Sprintf("member %s: %v", e.member, e.err) }
func (e *memberError) Unwrap() error { return e.err }

// inMember marks an error as one member's.
func inMember(member string, err error) error {
	if err == nil {
		return nil
	}
	return &memberError{member: member, err: err}
}

// collectMembers finds the members' errors in a tree of joined errors.
// An error of no member's (none is expected) is reported under "".
func collectMembers(err error, out map[string]error) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // walks the joined tree itself
		for _, e := range j.Unwrap() {
			collectMembers(e, out)
		}
		return
	}
	if me := (*memberError)(nil); errors.As(err, &me) {
		out[me.member] = errors.Join(out[me.member], me.err)
		return
	}
	out[""] = errors.Join(out[""], err)
}
