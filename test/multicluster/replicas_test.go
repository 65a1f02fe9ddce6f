package multicluster

import (
	"fmt"
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// Finding 3 of the trust-boundaries issue, on real apiservers: relay
// ports were allocated in arrival order, so two replicas (the chart runs
// two or three), and every restart, numbered colliding ports differently
// (2-5 of 200 ports between two live replicas), and the leader's relay
// slices could send one service's connections to another's listener on
// a gateway that follows the other replica. Here one replica writes back
// and sees the services arrive one by one; the other starts halfway, so
// it sees the first half in one batch and the rest as they come; then it
// restarts. 600 ports in the 10,000 slots collide a dozen times or more.
// Every relay port is the same on both, every time.
func TestReplicasAgreeOnRelayPorts(t *testing.T) {
	const services = 200
	var members []*member
	for _, c := range kube.Start(t, "a", "b") {
		mc, err := mcsclient.NewForConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, &member{Cluster: c, mcs: mc})
	}
	dir := kubeconfigDir(t, members[0].Cluster, members[1].Cluster)
	leader := cptest.StartWith(t, controlplane.Config{KubeconfigDir: dir, WriteBack: true, Resync: time.Minute})
	create := func(from, to int) {
		for i := from; i < to; i++ {
			m := members[i%2]
			name := fmt.Sprintf("s%03d", i)
			m.service(t, clusterIPService("relay", name,
				corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
				corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP},
				corev1.ServicePort{Name: "alt", Port: int32(8000 + i%7), Protocol: corev1.ProtocolTCP}))
			m.export(t, "relay", name)
		}
	}
	create(0, services/2)
	follower, stop := cptest.Run(t, controlplane.Config{KubeconfigDir: dir})
	create(services/2, services)

	agree := func(what string, a, b *controlplane.App) map[string]int32 {
		t.Helper()
		var pa map[string]int32
		eventually(t, what, func() error {
			pa = relayPorts(a)
			pb := relayPorts(b)
			if len(pa) != 3*services || len(pb) != 3*services {
				return fmt.Errorf("%d and %d relay ports, want %d each", len(pa), len(pb), 3*services)
			}
			if !maps.Equal(pa, pb) {
				diff := 0
				for k, v := range pa {
					if pb[k] != v {
						diff++
					}
				}
				return fmt.Errorf("%d of %d relay ports differ", diff, len(pa))
			}
			return nil
		})
		return pa
	}
	before := agree("the replicas agree", leader, follower)
	stop()
	again := cptest.StartWith(t, controlplane.Config{KubeconfigDir: dir})
	after := agree("the restarted replica agrees", leader, again)
	if !maps.Equal(before, after) {
		t.Error("relay ports moved across the restart")
	}
	used := map[int32]bool{}
	for _, p := range after {
		used[p] = true
	}
	t.Logf("%d relay ports, %d distinct", len(after), len(used))
}

// relayPorts are a replica's relay ports by service port.
func relayPorts(app *controlplane.App) map[string]int32 {
	out := map[string]int32{}
	snap := app.Writer.Snapshot()
	if snap == nil {
		return out
	}
	for k, st := range snap.State.Services.All() {
		if st.Import == nil {
			continue
		}
		for _, p := range st.Import.Ports {
			out[fmt.Sprintf("%s:%d", k, p.Port)] = p.RelayPort
		}
	}
	return out
}
