package multicluster

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// With --stale-after, a member unreachable for longer has its endpoints
// drained from what is served, and they come back with the member.
func TestStaleAfterDrainsAndRestores(t *testing.T) {
	cs := kube.Start(t, "x", "y")
	app := cptest.StartWith(t, controlplane.Config{KubeconfigDir: kubeconfigDir(t, cs...), StaleAfter: 2 * time.Second})
	x, y := &member{Cluster: cs[0], mcs: mustMCS(t, cs[0])}, &member{Cluster: cs[1], mcs: mustMCS(t, cs[1])}
	key := mcs.ServiceKey{Namespace: "stale", Name: "api"}
	x.namespace(t, key.Namespace) // x imports the service (namespace sameness)
	y.service(t, clusterIPService(key.Namespace, key.Name))
	y.slice(t, key.Namespace, key.Name, true, "10.7.0.1")
	y.export(t, key.Namespace, key.Name)
	view := controlplane.ViewName("x", translate.RoleClient)
	served := func(want []string) func() error {
		return func() error {
			if got := servedEndpoints(app, view, key, 80); !slices.Equal(got, want) {
				return fmt.Errorf("served %v, want %v", got, want)
			}
			return nil
		}
	}
	testkit.Eventually(t, "y's endpoint served", served([]string{"10.7.0.1"}))
	start := time.Now()
	cs[1].StopAPIServer()
	testkit.Eventually(t, "y's endpoint drained", served(nil))
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("drained after %v, before --stale-after", took)
	}
	if err := cs[1].StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "y's endpoint back", served([]string{"10.7.0.1"}))
}
