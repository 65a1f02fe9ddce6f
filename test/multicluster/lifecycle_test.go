package multicluster

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/pkg/writeback"
)

// servedEndpoints lists the endpoint addresses a view's clients get for a
// service port.
func servedEndpoints(app *controlplane.App, view string, key mcs.ServiceKey, port int32) []string {
	var out []string
	for _, r := range app.Cache.Resources(view, resourcev3.EndpointType).Resources {
		if r.Name != translate.ClusterName(key, port) {
			continue
		}
		for _, l := range r.Message.(*endpointv3.ClusterLoadAssignment).Endpoints {
			for _, e := range l.LbEndpoints {
				out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			}
		}
	}
	slices.Sort(out)
	return out
}

// serves reports whether a view of the control plane serves a cluster of
// that name.
func serves(app *controlplane.App, view, cluster string) bool {
	for _, r := range app.Cache.Resources(view, resourcev3.ClusterType).Resources {
		if r.Name == cluster {
			return true
		}
	}
	return false
}

// TestLifecycle covers member clusters joining and leaving, an apiserver
// outage, a control plane restart and leader election, on one ClusterSet.
func TestLifecycle(t *testing.T) {
	cs := startClusterSet(t)
	a, b, c := cs.members[0], cs.members[1], cs.members[2]
	key := mcs.ServiceKey{Namespace: "life", Name: "web"}
	view := controlplane.ViewName("a", translate.RoleClient)
	for i, m := range []*member{a, b} {
		m.service(t, clusterIPService(key.Namespace, key.Name))
		m.slice(t, key.Namespace, key.Name, true, fmt.Sprintf("10.%d.0.1", i+1), fmt.Sprintf("10.%d.0.2", i+1))
		m.export(t, key.Namespace, key.Name)
	}
	all := []string{"10.1.0.1", "10.1.0.2", "10.2.0.1", "10.2.0.2"}
	testkit.Eventually(t, "endpoints of a and b served", func() error {
		if got := servedEndpoints(cs.app, view, key, 80); !slices.Equal(got, all) {
			return fmt.Errorf("served %v", got)
		}
		return nil
	})

	t.Run("12 a cluster joins at runtime and leaves", func(t *testing.T) {
		d := cs.members[2] // c
		d.service(t, clusterIPService(key.Namespace, key.Name))
		d.slice(t, key.Namespace, key.Name, true, "10.3.0.1")
		d.export(t, key.Namespace, key.Name)
		// c is a member already; take it out and back in through its file.
		if err := os.Remove(filepath.Join(cs.kubeDir, "c.yaml")); err != nil {
			t.Fatal(err)
		}
		a.importIs(t, key.Namespace, key.Name, func(si *mcsv1b1.ServiceImport) error {
			if len(si.Status.Clusters) != 2 {
				return fmt.Errorf("clusters %v after c left", si.Status.Clusters)
			}
			return nil
		})
		if got := servedEndpoints(cs.app, view, key, 80); slices.Contains(got, "10.3.0.1") {
			t.Errorf("c's endpoint still served after c left: %v", got)
		}
		cs.join(c.Cluster)
		a.importIs(t, key.Namespace, key.Name, func(si *mcsv1b1.ServiceImport) error {
			if len(si.Status.Clusters) != 3 {
				return fmt.Errorf("clusters %v after c joined", si.Status.Clusters)
			}
			return nil
		})
		testkit.Eventually(t, "c's endpoint served", func() error {
			if got := servedEndpoints(cs.app, view, key, 80); !slices.Contains(got, "10.3.0.1") {
				return fmt.Errorf("served %v", got)
			}
			return nil
		})
		d.unexport(t, key.Namespace, key.Name)
		testkit.Eventually(t, "c unexported", func() error {
			if got := servedEndpoints(cs.app, view, key, 80); !slices.Equal(got, all) {
				return fmt.Errorf("served %v", got)
			}
			return nil
		})
	})

	t.Run("13 an apiserver down for 30s loses no served endpoint and converges when back", func(t *testing.T) {
		b.StopAPIServer()
		start := time.Now()
		for time.Since(start) < 30*time.Second {
			if got := servedEndpoints(cs.app, view, key, 80); !slices.Equal(got, all) {
				t.Fatalf("after %v of outage, served %v, want %v", time.Since(start).Truncate(time.Millisecond), got, all)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The other clusters keep working meanwhile.
		a.service(t, clusterIPService(key.Namespace, "during-outage"))
		a.export(t, key.Namespace, "during-outage")
		a.importIs(t, key.Namespace, "during-outage", nil)
		if err := b.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		b.slice(t, key.Namespace, key.Name, true, "10.2.0.1", "10.2.0.2", "10.2.0.3")
		testkit.Eventually(t, "b's change after its return", func() error {
			if got := servedEndpoints(cs.app, view, key, 80); !slices.Contains(got, "10.2.0.3") {
				return fmt.Errorf("served %v", got)
			}
			return nil
		})
		b.importIs(t, key.Namespace, "during-outage", nil)
		b.slice(t, key.Namespace, key.Name, true, "10.2.0.1", "10.2.0.2")
		// Seen before the next step measures a quiet write-back: a
		// member whose apiserver just came back may deliver it late.
		testkit.Eventually(t, "b's last change served", func() error {
			if got := servedEndpoints(cs.app, view, key, 80); !slices.Equal(got, all) {
				return fmt.Errorf("served %v", got)
			}
			return nil
		})
	})

	t.Run("14 a control plane restart serves no partial config and re-creates nothing", func(t *testing.T) {
		uids := func() map[string]types.UID {
			out := map[string]types.UID{}
			for _, m := range cs.members {
				si, err := m.getImport(key.Namespace, key.Name)
				if err == nil {
					out[m.Name+"/import"] = si.UID
				}
				svc, err := m.Client.CoreV1().Services(key.Namespace).Get(ctx, writeback.DerivedName(key), metav1.GetOptions{})
				if err == nil {
					out[m.Name+"/derived"] = svc.UID
				}
			}
			return out
		}
		before := uids()
		if len(before) != 6 {
			t.Fatalf("objects before restart: %v", before)
		}
		// The running replica has converged (after the outage above):
		// nothing pending, no write for 2.5 s.
		waitQuiet(t, cs.app)
		app := cptest.StartWith(t, controlplane.Config{KubeconfigDir: cs.kubeDir, WriteBack: true, Resync: time.Second})
		// The first state served is the whole one.
		if snap := app.Writer.Snapshot(); snap.Generation != 1 {
			t.Errorf("generation %d at ready: something was published before every cluster synced", snap.Generation)
		}
		if got := servedEndpoints(app, view, key, 80); !slices.Equal(got, all) {
			t.Errorf("first served endpoints %v, want %v", got, all)
		}
		// Two full write-back passes of the new replica (Resync 1 s) find
		// nothing to write: both replicas compare with current caches (a
		// member that reconnected after the outage is read again).
		if n := waitQuiet(t, app); n != 0 {
			t.Errorf("the restarted replica wrote %v objects; everything was in place", n)
		}
		after := uids()
		for k, uid := range before {
			if after[k] != uid {
				t.Errorf("%s was deleted and re-created (%s -> %s)", k, uid, after[k])
			}
		}
	})

	t.Run("15 two replicas: only the leader writes, and a new leader takes over", func(t *testing.T) {
		a.namespace(t, "eastwest-system")
		election := func() controlplane.Config {
			cfg := controlplane.Config{KubeconfigDir: cs.kubeDir, WriteBack: true, Resync: time.Second}
			cfg.Election.Config, cfg.Election.Namespace, cfg.Election.Name = a.Config, "eastwest-system", "eastwest-writeback"
			cfg.Election.LeaseDuration = 3 * time.Second
			return cfg
		}
		r1, stop1 := cptest.Run(t, election())
		r2, stop2 := cptest.Run(t, election())
		var leader, other *controlplane.App
		stopLeader := stop1
		testkit.Eventually(t, "one leader", func() error {
			switch {
			case r1.Leading() && !r2.Leading():
				leader, other = r1, r2
			case r2.Leading() && !r1.Leading():
				leader, other, stopLeader = r2, r1, stop2
			default:
				return fmt.Errorf("leading: r1 %v, r2 %v", r1.Leading(), r2.Leading())
			}
			return nil
		})
		// A change while both run: the leader writes it, the other
		// replica writes nothing at all.
		c.namespace(t, "before-handover")
		a.service(t, clusterIPService("before-handover", "web"))
		a.export(t, "before-handover", "web")
		c.importIs(t, "before-handover", "web", nil)
		// The leader runs the write-back (its passes count); whether it
		// or the ClusterSet's own control plane (cs.app, which writes
		// too, without an election) wrote this import first is a race,
		// so the writes themselves are not compared.
		testkit.Eventually(t, "the leader's write-back passes", func() error {
			if leader.WriteBack().Passes == 0 {
				return fmt.Errorf("the leader ran no write-back pass")
			}
			return nil
		})
		if n := metricValue(t, other, "eastwest_writeback_writes_total"); n != 0 {
			t.Errorf("the replica that does not lead wrote %v objects", n)
		}
		identity := leader.WriteBack().Election.Identity
		stopLeader()
		start := time.Now()
		// A leader that stops releases its Lease before its process
		// ends: the other replica need not wait for it to expire.
		lease, err := a.Client.CoordinationV1().Leases("eastwest-system").Get(t.Context(), "eastwest-writeback", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h := ""
		if lease.Spec.HolderIdentity != nil {
			h = *lease.Spec.HolderIdentity
		}
		if identity == "" || h == identity {
			t.Errorf("the stopped leader %q still holds the Lease (holder %q)", identity, h)
		}
		testkit.Eventually(t, "the other replica leads", func() error {
			if !other.Leading() {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		// The time is a figure, not a property (BenchmarkLeaderHandover).
		t.Logf("handover in %v (lease duration 3 s)", time.Since(start).Round(time.Millisecond))
		c.namespace(t, "after-handover")
		a.service(t, clusterIPService("after-handover", "web"))
		a.export(t, "after-handover", "web")
		c.importIs(t, "after-handover", "web", nil)
	})

	t.Run("16 a Lease that cannot be used is said at once, in /debug/writeback, a metric and readiness, until it can", func(t *testing.T) {
		cfg := controlplane.Config{KubeconfigDir: cs.kubeDir, WriteBack: true, Resync: time.Second}
		cfg.Election.Config, cfg.Election.Namespace, cfg.Election.Name = a.Config, "eastwest-missing", "eastwest-writeback"
		cfg.Election.LeaseDuration = 2 * time.Second
		app, stop := cptest.Run(t, cfg)
		defer stop()
		testkit.Eventually(t, "the failure in /debug/writeback and the metric", func() error {
			wb := app.WriteBack()
			if !strings.Contains(wb.Election.Error, "eastwest-missing") || app.Leading() {
				return fmt.Errorf("write-back %+v", wb)
			}
			if m := metricValue(t, app, "eastwest_leader_election_failing"); m != 1 {
				return fmt.Errorf("eastwest_leader_election_failing %v", m)
			}
			return nil
		})
		testkit.Eventually(t, "/readyz failing with the reason after two lease durations", func() error {
			code, body := get(t, "http://"+app.DebugAddr()+"/readyz")
			if code != 503 || !strings.Contains(body, "leader election failing") || !strings.Contains(body, "eastwest-missing") {
				return fmt.Errorf("/readyz %d %q", code, body)
			}
			return nil
		})
		a.namespace(t, "eastwest-missing")
		testkit.Eventually(t, "leading and ready once the namespace exists", func() error {
			code, body := get(t, "http://"+app.DebugAddr()+"/readyz")
			if wb := app.WriteBack(); !app.Leading() || wb.Election.Error != "" || code != 200 {
				return fmt.Errorf("leading %v, error %q, /readyz %d %q", app.Leading(), wb.Election.Error, code, body)
			}
			return nil
		})
	})
}

// metricValue reads one unlabelled metric of the app's.
func metricValue(t *testing.T, app *controlplane.App, name string) float64 {
	t.Helper()
	families, err := app.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			m := f.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// get fetches a URL: the status code and body (0 and the error text when
// the request fails).
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url) //nolint:gosec,noctx // the test's own debug endpoint
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
