package writeback

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

// A member whose pass fails backs off alone: 1 s doubling to 2 min; the
// passes meanwhile leave it out and are not full passes of the others; when
// due it is retried in full; its source syncing again makes it due at once;
// a pass it survives forgets its backoff.
func TestMembersBackOffAlone(t *testing.T) {
	w := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Unix(1000, 0)
	fail := func(members ...string) error {
		var errs []error
		for _, m := range members {
			errs = append(errs, inMember(m, fmt.Errorf("%s refused", m)))
		}
		return errors.Join(errs...)
	}
	scope := func(at time.Time) passScope {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.scopeLocked(false, at)
	}

	next, ok := w.settle(scope(now), fail("b"), now)
	if !ok || next != now.Add(time.Second) {
		t.Fatalf("first failure: next retry %v, %v; want in 1s", next.Sub(now), ok)
	}
	s := scope(now.Add(500 * time.Millisecond))
	if !s.skip["b"] || s.full("a") || s.full("b") {
		t.Errorf("while b backs off: %+v; want b left out, no full pass", s)
	}
	backoffs := []time.Duration{}
	at := now
	for range 9 {
		at = at.Add(time.Hour)
		s := scope(at)
		if !s.full("b") || s.full("a") || s.skip["b"] {
			t.Fatalf("b due: %+v; want b alone in full", s)
		}
		next, _ := w.settle(s, fail("b"), at)
		backoffs = append(backoffs, next.Sub(at))
	}
	if fmt.Sprint(backoffs) != "[2s 4s 8s 16s 32s 1m4s 2m0s 2m0s 2m0s]" {
		t.Errorf("backoffs %v", backoffs)
	}
	if r := w.Retries(); len(r) != 1 || r[0].Member != "b" || r[0].Failures != 10 || r[0].LastError != "b refused" {
		t.Errorf("Retries() = %+v", r)
	}

	// Another member failing does not touch b's backoff; b synced again
	// is due at once.
	w.MemberSynced("b")
	s = scope(at.Add(time.Second))
	if !s.full("b") {
		t.Errorf("b synced again: %+v; want it due", s)
	}
	if _, ok := w.settle(s, nil, at.Add(time.Second)); ok || len(w.Retries()) != 0 {
		t.Errorf("b passed: retries %+v; want none", w.Retries())
	}

	// An error of no member's makes the next due pass a full one.
	w.settle(scope(at), errors.New("no member's"), at)
	if s := scope(at.Add(time.Hour)); !s.all {
		t.Errorf("after an error of no member's: %+v; want a full pass", s)
	}
}

// collectMembers finds each member's errors in a tree of joined errors.
func TestCollectMembers(t *testing.T) {
	err := errors.Join(inMember("a", errors.New("x")), errors.Join(inMember("b", errors.New("y")), inMember("a", errors.New("z"))), nil)
	got := map[string]error{}
	collectMembers(err, got)
	if len(got) != 2 || got["a"].Error() != "x\nz" || got["b"].Error() != "y" {
		t.Errorf("collectMembers = %v", got)
	}
}
