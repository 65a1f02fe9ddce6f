package multicluster

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// waitQuiet waits until an app's write-back has nothing pending and made
// no write for 2.5 s (two full passes at Resync 1 s), and returns its
// write count.
func waitQuiet(t *testing.T, app *controlplane.App) float64 {
	t.Helper()
	writes, same := -1.0, 0
	testkit.Eventually(t, "write-back quiet", func() error {
		// A pass in progress counts as pending: it does not end the
		// quiet, a write does.
		if n := metricValue(t, app, "eastwest_writeback_writes_total"); n != writes {
			writes, same = n, 0
			return errors.New("writing")
		}
		if same++; same < 50 || metricValue(t, app, "eastwest_writeback_pending_services") != 0 {
			return errors.New("quiet for less than 2.5 s")
		}
		return nil
	})
	return writes
}

// The write-back is idempotent: once one replica has written a
// ClusterSet's MCS objects (ClusterSetIP and headless imports, exported
// from two clusters, with a conflict), further full passes of it and of a
// second replica write nothing, so replicas never fight over an object.
func TestWriteBackIsIdempotent(t *testing.T) {
	cs := kube.Start(t, "a", "b")
	a, b := &member{Cluster: cs[0], mcs: mustMCS(t, cs[0])}, &member{Cluster: cs[1], mcs: mustMCS(t, cs[1])}
	for i, m := range []*member{a, b} {
		m.service(t, clusterIPService("shop", "cart"))
		m.slice(t, "shop", "cart", true, "10.1.0.1", "10.1.0.2")
		m.export(t, "shop", "cart")
		headless := clusterIPService("shop", "db", corev1.ServicePort{Name: "sql", Port: 5432 + int32(i), Protocol: corev1.ProtocolTCP})
		headless.Spec.ClusterIP = corev1.ClusterIPNone
		m.service(t, headless)
		m.slice(t, "shop", "db", true, "10.2.0.1")
		m.export(t, "shop", "db")
	}
	dir := kubeconfigDir(t, cs...)
	first := cptest.StartWith(t, controlplane.Config{KubeconfigDir: dir, WriteBack: true, Resync: time.Second})
	a.importIs(t, "shop", "cart", nil)
	b.importIs(t, "shop", "db", nil)
	// Quiet means two full passes (Resync 1 s) wrote nothing.
	before := waitQuiet(t, first)
	second := cptest.StartWith(t, controlplane.Config{KubeconfigDir: dir, WriteBack: true, Resync: time.Second})
	if n := waitQuiet(t, second); n != 0 {
		t.Errorf("a second replica wrote %v objects over state already written", n)
	}
	if n := waitQuiet(t, first); n != before {
		t.Errorf("the first replica wrote %v objects after the second started", n-before)
	}
}
