package writeback

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ElectionStatus is what a replica knows of the write-back's leadership:
// shown on /debug/writeback and by `xds status`, exported as metrics, and
// part of readiness (a replica that cannot reach its Lease, so that no
// replica writes, is not ready).
type ElectionStatus struct {
	// Enabled is false without an election: this replica always writes.
	Enabled bool `json:"enabled"`
	// Lease is the Lease's namespace/name.
	Lease    string `json:"lease,omitempty"`
	Identity string `json:"identity,omitempty"`
	Leading  bool   `json:"leading"`
	// Leader is the Lease's holder as last read.
	Leader string `json:"leader,omitempty"`
	// Error is the last failure to read or write the Lease, and since when
	// the failures have gone on; empty once it succeeds again.
	Error        string    `json:"error,omitempty"`
	FailingSince time.Time `json:"failingSince,omitzero"`
}

// Recorder keeps the ElectionStatus up to date; safe for concurrent use.
type Recorder struct {
	mu sync.Mutex
	st ElectionStatus
	// OnChange, when set before Lead, is told every new status.
	OnChange func(ElectionStatus)
}

// Status returns the current status.
func (r *Recorder) Status() ElectionStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

func (r *Recorder) update(fn func(*ElectionStatus)) {
	r.mu.Lock()
	before := r.st
	fn(&r.st)
	st := r.st
	r.mu.Unlock()
	if st != before && r.OnChange != nil {
		r.OnChange(st)
	}
}

// failed records a failure to use the Lease (nil: a success).
func (r *Recorder) failed(err error, now time.Time) {
	r.update(func(s *ElectionStatus) {
		if err == nil {
			s.Error, s.FailingSince = "", time.Time{}
			return
		}
		if s.Error == "" {
			s.FailingSince = now
		}
		s.Error = err.Error()
	})
}

// observedLock is a Lease lock whose reads and writes are recorded: the
// leader election library only logs its failures.
type observedLock struct {
	resourcelock.Interface
	rec *Recorder
}

func (l observedLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := l.Interface.Get(ctx)
	if err == nil {
		l.rec.update(func(s *ElectionStatus) { s.Leader = rec.HolderIdentity })
		l.rec.failed(nil, time.Now())
	} else if !apierrors.IsNotFound(err) { // no Lease yet: Create follows
		l.rec.failed(err, time.Now())
	}
	return rec, raw, err
}

func (l observedLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, ler)
	l.rec.failed(err, time.Now())
	return err
}

func (l observedLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, ler)
	l.rec.failed(err, time.Now())
	return err
}
