package testkit

import (
	"sync/atomic"
	"testing"
	"time"
)

// Loop sends requests one after the other, a pause between them, while a
// test disrupts what serves them (a restart, an outage), and counts them:
// the disruption lasts a number of requests, not a time (a slow machine
// sends fewer in a time, and a time could pass with none).
type Loop struct {
	t              testing.TB
	sent, failed   atomic.Int64
	stop, finished chan struct{}
}

// StartLoop starts sending: request says whether one request succeeded.
// The loop ends at Stop, or after a minute (a guard); the test's cleanup
// stops it too.
func StartLoop(t testing.TB, pause time.Duration, request func() bool) *Loop {
	l := &Loop{t: t, stop: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(l.finished)
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-l.stop:
				return
			default:
			}
			ok := request()
			l.sent.Add(1)
			if !ok {
				l.failed.Add(1)
			}
			time.Sleep(pause)
		}
	}()
	t.Cleanup(l.Stop)
	return l
}

// More waits until n more requests have been sent; the test fails if the
// loop ends first.
func (l *Loop) More(n int64) {
	l.t.Helper()
	for at := l.sent.Load(); l.sent.Load() < at+n; {
		select {
		case <-l.finished:
			l.t.Fatalf("the request loop ended before %d more requests", n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Stop ends the loop and waits for its last request.
func (l *Loop) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.finished
}

// Sent counts the requests sent so far.
func (l *Loop) Sent() int64 { return l.sent.Load() }

// Failed counts the requests that failed so far.
func (l *Loop) Failed() int64 { return l.failed.Load() }
