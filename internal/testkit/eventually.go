package testkit

import (
	"errors"
	"testing"
	"time"
)

// Poll says how Eventually polls: every Every (default 20 ms), failing
// after Within (default 30 s: a guard against hangs, not a latency
// figure; benchmarks give those).
type Poll struct {
	Every, Within time.Duration
}

// errNotYet is what Holds says while its condition does not hold.
var errNotYet = errors.New("not yet")

// Holds makes a condition with nothing more to say a check for Eventually.
func Holds(cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}
}

// Eventually runs check until it passes and returns how long that took; it
// fails the test with check's last error when poll's Within has passed.
// Every test waits with it: one way to wait, one default bound.
func Eventually(t testing.TB, what string, check func() error, poll ...Poll) time.Duration {
	t.Helper()
	p := Poll{Every: 20 * time.Millisecond, Within: 30 * time.Second}
	for _, o := range poll {
		if o.Every > 0 {
			p.Every = o.Every
		}
		if o.Within > 0 {
			p.Within = o.Within
		}
	}
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > p.Within {
			t.Fatalf("%s: not within %v: %v", what, p.Within, err)
		}
		time.Sleep(p.Every)
	}
}
