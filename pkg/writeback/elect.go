package writeback

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/eastwest-dev/eastwest/internal/kubeclient"
)

// Election configures leader election: only the replica holding the Lease
// writes to member clusters.
type Election struct {
	// Config reaches the cluster that holds the Lease (the control
	// plane's own). Nil: no election, this replica always writes.
	Config    *rest.Config
	Namespace string
	Name      string
	// LeaseDuration is how long a dead leader blocks the others.
	LeaseDuration time.Duration
}

// Lead runs fn while this replica leads, until ctx ends; when leadership is
// lost fn's context is cancelled and Lead campaigns again. rec is kept up
// to date (leading, the holder, the last failure to use the Lease).
func Lead(ctx context.Context, e Election, log *slog.Logger, rec *Recorder, fn func(context.Context)) error {
	if e.Config == nil {
		rec.update(func(s *ElectionStatus) { s.Enabled, s.Leading = false, true })
		fn(ctx)
		return nil
	}
	client, err := kubeclient.Core(e.Config)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s-%s", host, rand.String(6))
	if e.LeaseDuration <= 0 {
		e.LeaseDuration = 15 * time.Second
	}
	rec.update(func(s *ElectionStatus) { s.Enabled, s.Identity, s.Lease = true, id, e.Namespace+"/"+e.Name })
	// Say at once what would otherwise only show as the election library
	// failing every few seconds.
	if _, err := client.CoreV1().Namespaces().Get(ctx, e.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		err := fmt.Errorf("the Lease's namespace %s does not exist: create it, or set --namespace; no replica writes to member clusters until then", e.Namespace)
		log.Error("leader election cannot start", "err", err)
		rec.failed(err, time.Now())
	}
	lock := observedLock{Interface: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}, rec: rec}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   e.LeaseDuration,
			RenewDeadline:   e.LeaseDuration * 2 / 3,
			RetryPeriod:     e.LeaseDuration / 7,
			ReleaseOnCancel: true,
			Name:            e.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					log.Info("leading: writing to member clusters", "identity", id)
					rec.update(func(s *ElectionStatus) { s.Leading = true })
					fn(lctx)
				},
				OnStoppedLeading: func() {
					rec.update(func(s *ElectionStatus) { s.Leading = false })
					log.Info("not leading: serving xDS only", "identity", id)
				},
				OnNewLeader: func(identity string) {
					rec.update(func(s *ElectionStatus) { s.Leader = identity })
				},
			},
		})
	}
	return nil
}
