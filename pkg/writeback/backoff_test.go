package writeback

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

// A member whose pass fails backs off alone: 1 s doubling to 2 min, its
// error and failures shown by Retries; its source syncing again makes it
// due at once; a pass that passes forgets its backoff.
func TestBackoffDoublesToTwoMinutes(t *testing.T) {
	w := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	at := time.Unix(1000, 0)
	var backoffs []time.Duration
	for range 10 {
		w.failedLocked("b", errors.New("b refused"), at)
		if !w.backingOffLocked("b", at) || w.backingOffLocked("a", at) {
			t.Fatal("b not backing off, or a is")
		}
		backoffs = append(backoffs, w.retries["b"].at.Sub(at))
		at = at.Add(time.Hour)
	}
	if fmt.Sprint(backoffs) != "[1s 2s 4s 8s 16s 32s 1m4s 2m0s 2m0s 2m0s]" {
		t.Errorf("backoffs %v", backoffs)
	}
	if r := w.Retries(); len(r) != 1 || r[0].Member != "b" || r[0].Failures != 10 || r[0].LastError != "b refused" {
		t.Errorf("Retries() = %+v", r)
	}
	w.failedLocked("b", errors.New("b refused"), at)
	w.MemberSynced("b")
	if w.backingOffLocked("b", at) {
		t.Error("b synced again but still backing off")
	}
	w.recoveredLocked("b")
	if r := w.Retries(); len(r) != 0 {
		t.Errorf("b passed: retries %+v; want none", r)
	}
}
