package writeback

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

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
// lost fn's context is cancelled and Lead campaigns again.
func Lead(ctx context.Context, e Election, log *slog.Logger, leading func(bool), fn func(context.Context)) error {
	if e.Config == nil {
		leading(true)
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
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
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
					leading(true)
					fn(lctx)
				},
				OnStoppedLeading: func() {
					leading(false)
					log.Info("not leading: serving xDS only", "identity", id)
				},
			},
		})
	}
	return nil
}
