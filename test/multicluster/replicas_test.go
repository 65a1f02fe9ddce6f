package multicluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/writeback"
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
		testkit.Eventually(t, what, func() error {
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

// The rest of finding 3: with Kubernetes members an allocation never
// changes while its service port exists. The write-back leader records
// every relay port in the relay ledger (ConfigMaps in the control
// plane's own cluster) and every replica reads it before its first
// publish: a port exported later that sorts before an older one and
// wants its relay port probes past it (without the ledger it takes the
// slot and the older port moves), a replica started later agrees, and so
// does one started after every replica stopped.
func TestRelayPortsStayWhileTheirPortsExist(t *testing.T) {
	var members []*member
	for _, c := range kube.Start(t, "a", "b") {
		mc, err := mcsclient.NewForConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, &member{Cluster: c, mcs: mc})
	}
	home := members[0]
	home.namespace(t, "eastwest-system")
	dir := kubeconfigDir(t, members[0].Cluster, members[1].Cluster)
	replica := func() controlplane.Config {
		cfg := controlplane.Config{KubeconfigDir: dir, WriteBack: true, Resync: time.Minute}
		cfg.Election.Config, cfg.Election.Namespace, cfg.Election.Name = home.Config, "eastwest-system", "eastwest-writeback"
		cfg.Election.LeaseDuration = 3 * time.Second
		return cfg
	}
	tcp80 := corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}
	old := mcs.ServiceKey{Namespace: "relay", Name: "zz-old"}
	newcomer := mcs.ServiceKey{Namespace: "relay"}
	for i := 0; newcomer.Name == "" || mcs.RelayFirstChoice(newcomer, 80) != mcs.RelayFirstChoice(old, 80); i++ {
		newcomer.Name = fmt.Sprintf("a%d", i)
	}
	want := mcs.RelayFirstChoice(old, 80)

	first, stopFirst := cptest.Run(t, replica())
	members[0].service(t, clusterIPService(old.Namespace, old.Name, tcp80))
	members[0].export(t, old.Namespace, old.Name)
	testkit.Eventually(t, "the older port has its first choice, in the ledger", func() error {
		if got := relayPorts(first)[old.String()+":80"]; got != want {
			return fmt.Errorf("relay port %d, want %d", got, want)
		}
		return ledgerHas(t, home, old, 80, want)
	})
	members[1].service(t, clusterIPService(newcomer.Namespace, newcomer.Name, tcp80))
	members[1].export(t, newcomer.Namespace, newcomer.Name)
	testkit.Eventually(t, "the newcomer has another relay port, the older port its own", func() error {
		ports := relayPorts(first)
		if n := ports[newcomer.String()+":80"]; n == 0 || n == want {
			return fmt.Errorf("the newcomer's relay port is %d", n)
		}
		if n := ports[old.String()+":80"]; n != want {
			return fmt.Errorf("the older port moved to %d", n)
		}
		return ledgerHas(t, home, newcomer, 80, ports[newcomer.String()+":80"])
	})
	before := relayPorts(first)

	second, stopSecond := cptest.Run(t, replica())
	testkit.Eventually(t, "a replica started later agrees", func() error {
		if got := relayPorts(second); !maps.Equal(got, before) {
			return fmt.Errorf("%v, want %v", got, before)
		}
		return nil
	})
	stopFirst()
	stopSecond()
	third, _ := cptest.Run(t, replica())
	testkit.Eventually(t, "a replica started after all stopped agrees", func() error {
		if got := relayPorts(third); !maps.Equal(got, before) {
			return fmt.Errorf("%v, want %v", got, before)
		}
		return nil
	})

	// Without the ledger (no own cluster: the allocation is derived from
	// the ports alone), the newcomer takes the older port's first choice:
	// what the ledger prevents.
	bare := cptest.StartWith(t, controlplane.Config{KubeconfigDir: dir})
	testkit.Eventually(t, "without the ledger the older port moves", func() error {
		ports := relayPorts(bare)
		if ports[newcomer.String()+":80"] != want || ports[old.String()+":80"] == want {
			return fmt.Errorf("newcomer %d, older %d", ports[newcomer.String()+":80"], ports[old.String()+":80"])
		}
		return nil
	})
}

// ledgerHas checks that the relay ledger in the control plane's cluster
// records port's relay port n.
func ledgerHas(t testing.TB, home *member, key mcs.ServiceKey, port, n int32) error {
	t.Helper()
	list, err := home.Client.CoreV1().ConfigMaps("eastwest-system").List(context.Background(), metav1.ListOptions{LabelSelector: writeback.LabelRelayLedger})
	if err != nil {
		return err
	}
	entry := fmt.Sprintf("%d=%d", port, n)
	for _, cm := range list.Items {
		if v, ok := cm.Data[key.Namespace+"."+key.Name]; ok {
			if slices.Contains(strings.Split(v, ","), entry) {
				return nil
			}
			return fmt.Errorf("the ledger says %s: %q, want %s", key, v, entry)
		}
	}
	return fmt.Errorf("the ledger (%d ConfigMaps) has no %s", len(list.Items), key)
}
