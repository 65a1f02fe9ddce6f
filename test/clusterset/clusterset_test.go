package clusterset

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/envoystats"
	"github.com/eastwest-dev/eastwest/pkg/writeback"
	"github.com/eastwest-dev/eastwest/test/cluster"
)

var keep = flag.String("keep", "", "after the traffic checks, leave the ClusterSet running and write its kubeconfigs and a how-to into this folder, until a file named stop appears there (make clusterset-up, make clusterset-down)")

const cartName = "cart." + Apps + ".svc.clusterset.local"

// eastwest installed across three real clusters by running
// docs/install.md and docs/networks.md as written: the control plane (two
// replicas, leader election, mutual TLS, a trust anchor per member, exposed
// by a LoadBalancer) in own, all three members, east-west gateways in each
// on two networks (own and east share one).
// A pod of own calls cart, exported by east and west, by its
// clusterset.local name (the cluster's own CoreDNS, the project's
// Corefile) and by its ClusterSet IP (kube-proxy on the MCS EndpointSlices
// the write-back wrote): east's pods answer straight across the flat
// network, west's through the gateways' mutual-TLS tunnel; from west, east
// answers through the tunnel the other way. Then, with requests flowing
// without a pause: a control-plane pod deleted (the write-back leader)
// and the gateways rolled fail no request; east's pods deleted, west
// serves everything.
func TestHelmInstall(t *testing.T) {
	cs := Up(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// Registered after Up, so it runs before the clusters stop.
	t.Cleanup(func() {
		if t.Failed() {
			cs.diagnose(t)
		}
	})
	pods := map[string]string{} // cart pod -> its cluster
	for _, c := range []*cluster.Cluster{cs.East, cs.West} {
		for _, p := range c.WaitPodsReady(t, Apps, "app=cart", 2) {
			pods[p.Name] = c.Name
		}
	}
	start := time.Now()
	// own has no cart: east's pods answer it across the flat network,
	// west's through the tunnel. East and west answer themselves (local
	// first: the relay's Envoy sends to other members only when the own
	// member has no ready endpoint, below).
	for _, c := range cs.All {
		want := []string{c.Name}
		if c == cs.Own {
			want = []string{"east", "west"}
		}
		for _, target := range []string{cartName, clusterSetIP(ctx, t, c)} {
			seen := cs.answerers(ctx, t, c, target, pods, want)
			t.Logf("from %s to %s: answered by %v", c.Name, target, seen)
		}
	}
	t.Logf("every cluster reaches cart by name and ClusterSet IP, %v after the install", time.Since(start).Round(time.Second))
	cs.noRejections(ctx, t, "after the install")
	// Who talks to whom, on real nodes: own's requests for west's pods
	// go through own's gateways (relayed), which count them, and their
	// bytes, on the chart's stats port as Prometheus scrapes it.
	cs.crossCluster(ctx, t, cs.Own, "west")
	// The write-back leader keeps the relay ports it gave out (the
	// chart's Role lets it write the ledger beside it).
	waitFor(ctx, t, "the relay ledger in own", func() error {
		list, err := cs.Own.Client.CoreV1().ConfigMaps(Namespace).List(ctx, metav1.ListOptions{LabelSelector: writeback.LabelRelayLedger})
		if err != nil {
			return err
		}
		for _, cm := range list.Items {
			if len(cm.Data) > 0 {
				return nil
			}
		}
		return fmt.Errorf("%d ledger ConfigMaps, none holding a port", len(list.Items))
	})
	if *keep != "" {
		cs.hold(t, *keep)
		return
	}

	// Requests without a pause from own, through both paths.
	loop := cs.startLoop(ctx, t, cs.Own, "http://"+cartName+"/")
	loop.more(ctx, t, 20)
	loop.expectNoFailure(ctx, t, "before any disruption", func() { loop.more(ctx, t, 20) })

	loop.expectNoFailure(ctx, t, "the write-back leader's pod deleted", func() {
		lease, err := cs.Own.Client.CoordinationV1().Leases(Namespace).Get(ctx, "eastwest-writeback", metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil {
			t.Fatalf("no write-back leader: %v", err)
		}
		// The identity is the pod's host name and a random suffix.
		holder, leader := *lease.Spec.HolderIdentity, ""
		for _, p := range cs.Own.WaitPodsReady(t, Namespace, "app=eastwest", 2) {
			if strings.HasPrefix(holder, p.Name+"-") {
				leader = p.Name
			}
		}
		if leader == "" {
			t.Fatalf("no control-plane pod holds the lease (%s)", holder)
		}
		if err := cs.Own.Client.CoreV1().Pods(Namespace).Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete the leader %s: %v", leader, err)
		}
		waitFor(ctx, t, "a new write-back leader", func() error {
			l, err := cs.Own.Client.CoordinationV1().Leases(Namespace).Get(ctx, "eastwest-writeback", metav1.GetOptions{})
			if err != nil || l.Spec.HolderIdentity == nil || strings.HasPrefix(*l.Spec.HolderIdentity, leader+"-") {
				return fmt.Errorf("still %v", l.Spec.HolderIdentity)
			}
			return nil
		})
		if err := cs.Own.WaitRolledOut(ctx, Namespace, "eastwest"); err != nil {
			t.Fatal(err)
		}
		goneAll(ctx, t, cs.Own, "app=eastwest")
		loop.more(ctx, t, 30)
	})
	for _, c := range []*cluster.Cluster{cs.Own, cs.West} {
		loop.expectNoFailure(ctx, t, c.Name+"'s gateways rolled", func() {
			if err := c.Restart(ctx, Namespace, "eastwest-gateway"); err != nil {
				t.Fatal(err)
			}
			// Until the old pods are gone (their preStop sleep, then Envoy
			// stopped), and a little after.
			goneAll(ctx, t, c, "app=eastwest-gateway")
			loop.more(ctx, t, 20)
		})
	}

	// East's pods gone: west answers everything.
	before := loop.lines(ctx, t)
	if _, err := cs.East.Client.AppsV1().Deployments(Apps).Patch(ctx, "cart", "application/merge-patch+json",
		[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	waitFor(ctx, t, "only west answering", func() error {
		lines := loop.lines(ctx, t)
		if len(lines) < len(before)+20 {
			return fmt.Errorf("%d requests since", len(lines)-len(before))
		}
		for _, l := range lines[len(lines)-20:] {
			if f := strings.Fields(l); len(f) < 3 || f[1] != "ok" || pods[f[2]] != "west" {
				return fmt.Errorf("the last 20 requests include %q", l)
			}
		}
		return nil
	})
	lines := loop.lines(ctx, t)
	failed := 0
	for _, l := range lines[len(before):] {
		if !strings.Contains(l, " ok ") {
			failed++
		}
	}
	t.Logf("east's pods deleted: only west answers %v later; %d of %d requests failed meanwhile", time.Since(gone).Round(100*time.Millisecond), failed, len(lines)-len(before))
	// And east's own clients reach west, through east's gateways and the
	// tunnel to west's.
	seen := cs.answerers(ctx, t, cs.East, cartName, pods, []string{"west"})
	t.Logf("from east, its pods gone: answered by %v", seen)
	cs.noRejections(ctx, t, "at the end")
}

// noRejections checks, with `xds status --kubeconfig` (every replica of
// the control plane, each reached by a port-forward), that every gateway
// is connected to a replica and holds what it was last sent: none has
// rejected a configuration. Each replica says its write-back state; one
// leads.
func (cs *ClusterSet) noRejections(ctx context.Context, t *testing.T, when string) {
	t.Helper()
	pods := cs.Own.WaitPodsReady(t, Namespace, "app=eastwest", 2)
	cmd := exec.CommandContext(ctx, cs.XDS, "status", "--kubeconfig", cs.Own.Kubeconfig, "--namespace", Namespace) //nolint:gosec // the xds this test built
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("%s: xds status --kubeconfig: %v\n%s", when, err, out)
	}
	if !strings.HasPrefix(out, "REPLICA ") {
		t.Errorf("%s: xds status --kubeconfig does not name the replicas:\n%s", when, out)
	}
	gateways, leading := 0, 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " gateway ") {
			gateways++
			if !slices.ContainsFunc(pods, func(p corev1.Pod) bool { return strings.HasPrefix(l, p.Name+" ") }) {
				t.Errorf("%s: a gateway's line does not start with its replica: %q", when, l)
			}
		}
		if strings.Contains(l, "NACKED") {
			t.Errorf("%s: a client rejected its configuration:\n%s", when, out)
		}
		if strings.HasPrefix(l, "Write-back (") && strings.Contains(l, "leading") {
			leading++
		}
	}
	for _, p := range pods {
		if !strings.Contains(out, "Write-back ("+p.Name+")") {
			t.Errorf("%s: replica %s's write-back is not shown:\n%s", when, p.Name, out)
		}
	}
	if gateways != 6 || leading != 1 {
		t.Errorf("%s: %d gateways connected to the control plane (want 6: two per cluster), %d replicas leading (want 1):\n%s", when, gateways, leading, out)
	}
}

// clusterSetIP is cart's ClusterSet IP in c (its ServiceImport's: each
// member has its own).
func clusterSetIP(ctx context.Context, t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	mc, err := mcsclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	var ip string
	waitFor(ctx, t, "cart's ServiceImport in "+c.Name, func() error {
		si, err := mc.MulticlusterV1beta1().ServiceImports(Apps).Get(ctx, "cart", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(si.Spec.IPs) == 0 {
			return fmt.Errorf("no IPs yet")
		}
		ip = si.Spec.IPs[0]
		return nil
	})
	return ip
}

// crossCluster waits until c's gateway pods, scraped on the chart's stats
// port (:15090/stats/prometheus) from c's client pod, count requests and
// response bytes from c to member dst.
func (cs *ClusterSet) crossCluster(ctx context.Context, t *testing.T, c *cluster.Cluster, dst string) {
	t.Helper()
	client := c.WaitPodsReady(t, Apps, "app=client", 1)[0].Name
	waitFor(ctx, t, fmt.Sprintf("%s's gateways counting its traffic to %s", c.Name, dst), func() error {
		got := map[string]float64{}
		for _, p := range c.WaitPodsReady(t, Namespace, "app=eastwest-gateway", 1) {
			out, err := c.Exec(ctx, Apps, client, "curl", "-sS", "-m", "3", fmt.Sprintf("http://%s/stats/prometheus", net.JoinHostPort(p.Status.PodIP, "15090")))
			if err != nil {
				return fmt.Errorf("scrape %s: %w", p.Name, err)
			}
			for _, line := range strings.Split(out, "\n") {
				name, rest, ok := strings.Cut(line, "{")
				if !ok || !strings.Contains(rest, envoystats.TagSource+`="`+c.Name+`"`) || !strings.Contains(rest, envoystats.TagDestination+`="`+dst+`"`) {
					continue
				}
				var v float64
				if _, err := fmt.Sscan(rest[strings.LastIndex(rest, " ")+1:], &v); err == nil {
					got[name] += v
				}
			}
		}
		if got[envoystats.Completed] == 0 || got[envoystats.ResponseBytes] == 0 {
			return fmt.Errorf("counted %v", got)
		}
		t.Logf("%s's gateways counted, to %s: %v requests, %v response bytes", c.Name, dst, got[envoystats.Completed], got[envoystats.ResponseBytes])
		return nil
	})
}

// answerers calls target from c's client pod until pods of every one of
// want's clusters have answered.
func (cs *ClusterSet) answerers(ctx context.Context, t *testing.T, c *cluster.Cluster, target string, pods map[string]string, want []string) []string {
	t.Helper()
	client := c.WaitPodsReady(t, Apps, "app=client", 1)[0].Name
	seen := map[string]bool{}
	waitFor(ctx, t, fmt.Sprintf("answers from %v to %s in %s", want, target, c.Name), func() error {
		out, err := c.Exec(ctx, Apps, client, "sh", "-c", fmt.Sprintf("for i in $(seq 10); do curl -sS -m 3 http://%s/; done", target))
		for _, l := range strings.Fields(out) {
			if m, ok := pods[l]; ok {
				seen[m] = true
			}
		}
		for _, w := range want {
			if !seen[w] {
				if err != nil {
					return fmt.Errorf("answered by %v, the last call: %w", seen, err)
				}
				return fmt.Errorf("answered by %v", seen)
			}
		}
		return nil
	})
	var out []string
	for m := range seen {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// loop is a pod sending requests without a pause, one log line each:
// "<n> ok <answering pod>" or "<n> fail <why>".
type loop struct {
	c   *cluster.Cluster
	pod string
}

func (cs *ClusterSet) startLoop(ctx context.Context, t *testing.T, c *cluster.Cluster, url string) *loop {
	t.Helper()
	script := fmt.Sprintf(`i=0; while :; do i=$((i+1)); if out=$(curl -sS -m 2 --fail %s 2>&1); then echo "$i ok $out"; else echo "$i fail $(echo $out | tr '\n' ' ')"; fi; sleep 0.05; done`, url)
	yaml := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: loop, namespace: %s, labels: {app: loop}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: loop, image: %s, imagePullPolicy: Never, command: [sh, -c, %q]}
`, Apps, cluster.NetshootImage, script)
	if err := c.Apply(ctx, []byte(yaml)); err != nil {
		t.Fatal(err)
	}
	c.WaitPodsReady(t, Apps, "app=loop", 1)
	return &loop{c: c, pod: "loop"}
}

func (l *loop) lines(ctx context.Context, t *testing.T) []string {
	t.Helper()
	out, err := l.c.Logs(ctx, Apps, l.pod)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(out), "\n")
}

// more waits until n more requests have been sent (the loop's log).
func (l *loop) more(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	want := len(l.lines(ctx, t)) + n
	waitFor(ctx, t, fmt.Sprintf("%d more requests", n), func() error {
		if got := len(l.lines(ctx, t)); got < want {
			return fmt.Errorf("%d of %d", got, want)
		}
		return nil
	})
}

// expectNoFailure runs disrupt and fails the test if a request sent
// meanwhile failed.
func (l *loop) expectNoFailure(ctx context.Context, t *testing.T, what string, disrupt func()) {
	t.Helper()
	before := len(l.lines(ctx, t))
	disrupt()
	lines := l.lines(ctx, t)[before:]
	var failed []string
	for _, x := range lines {
		if !strings.Contains(x, " ok ") {
			failed = append(failed, x)
		}
	}
	if len(lines) == 0 {
		t.Errorf("%s: no request was sent", what)
	}
	if len(failed) > 0 {
		t.Errorf("%s: %d of %d requests failed: %v", what, len(failed), len(lines), failed[:min(len(failed), 10)])
		return
	}
	t.Logf("%s: %d of %d requests answered", what, len(lines), len(lines))
}

// goneAll waits until no pod of selector is terminating.
func goneAll(ctx context.Context, t *testing.T, c *cluster.Cluster, selector string) {
	t.Helper()
	waitFor(ctx, t, "the old pods of "+selector+" gone", func() error {
		list, err := c.Client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				return fmt.Errorf("%s terminating", p.Name)
			}
		}
		return nil
	})
}

// waitFor is testkit.Eventually on real clusters: every 500 ms, until
// ctx's deadline (the test's budget, minutes).
func waitFor(ctx context.Context, t *testing.T, what string, check func() error) {
	t.Helper()
	within := 15 * time.Minute
	if d, ok := ctx.Deadline(); ok {
		within = time.Until(d)
	}
	testkit.Eventually(t, what, check, testkit.Poll{Every: 500 * time.Millisecond, Within: within})
}

// hold writes the ClusterSet's kubeconfigs and a how-to into dir and waits
// for dir/stop (or SIGINT, SIGTERM); the test's cleanup then stops it all.
func (cs *ClusterSet) hold(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(dir, "stop"))
	var b strings.Builder
	fmt.Fprintf(&b, "The ClusterSet %q: three real clusters, eastwest installed by running docs/install.md and docs/networks.md as written.\nThe operator's files (CAs, keys, clusterset.yaml) are in %s.\n\n", Name, filepath.Join(cs.Dir, "operator", "work"))
	for _, c := range cs.All {
		cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if err := clientcmdapi.FlattenConfig(cfg); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, c.Name+".kubeconfig")
		if err := clientcmd.WriteToFile(*cfg, path); err != nil {
			t.Fatal(err)
		}
		role := "member"
		if c == cs.Own {
			role = "member, runs the control plane"
		}
		fmt.Fprintf(&b, "  %-5s network %s, %s: export KUBECONFIG=%s\n", c.Name, c.Network, role, path)
	}
	kubectl := filepath.Join(cluster.DefaultBins().Kube, "kubectl")
	fmt.Fprintf(&b, `
kubectl is %[1]s. Try:

  export KUBECONFIG=%[2]s/own.kubeconfig
  %[1]s -n %[3]s get serviceimports,endpointslices          # what the write-back wrote: cart from east and west
  %[1]s -n %[3]s exec deploy/client -- curl -s http://%[4]s/   # east answers directly, west through the gateways' tunnel
  %[1]s -n %[5]s get pods,leases                              # the control plane's two replicas and the write-back leader
  %[6]s status --kubeconfig %[2]s/own.kubeconfig    # every replica's xDS clients: every cluster's gateways
  %[6]s members --kubeconfig %[2]s/own.kubeconfig   # the members: merged, connected, networks, gateways

  KUBECONFIG=%[2]s/east.kubeconfig %[1]s -n %[3]s scale deploy/cart --replicas 0   # then call it again from own: west answers

make clusterset-down stops it all.
`, kubectl, dir, Apps, cartName, Namespace, cs.XDS)
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filepath.Join(dir, "ready"))
	fmt.Print(b.String())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	for {
		select {
		case <-sig:
			return
		case <-time.After(time.Second):
			if _, err := os.Stat(filepath.Join(dir, "stop")); err == nil {
				return
			}
		}
	}
}
