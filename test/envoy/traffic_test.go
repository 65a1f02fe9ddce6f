package envoy

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/envoystats"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

// tieredMembers are five members over three regions and two
// jurisdictions, on loopback (one network: the tunnels' tiers are the
// translate goldens' and TestNetworksTunnel's).
var tieredMembers = []struct{ name, region, jurisdiction string }{
	{"use1", "us-east", "US"}, {"use2", "us-east", "US"}, {"usw1", "us-west", "US"},
	{"euw1", "eu-west", "EU"}, {"euw2", "eu-west", "EU"},
}

// tiered is the ClusterSet of tieredMembers served to use1's east-west
// gateway, a real Envoy; each member has one backend pod.
type tiered struct {
	dir      string
	backends map[string]*envoytest.Backend
	addr     string
	c        *http.Client
}

// export writes member m's export of svc (port 80 to its backend), with
// annotations as name, value pairs; ready false makes its endpoint not
// ready.
func (tr *tiered) export(t testing.TB, m, svc string, ready bool, annotations ...string) {
	t.Helper()
	b := tr.backends[m]
	ip := b.IP
	if !ready {
		ip += "!"
	}
	doc := fixture.ServiceYAML("shop", svc, []string{fmt.Sprintf("http:80:%d", b.HTTPPort)}, ip)
	if len(annotations) > 0 {
		doc = fixture.Annotate(doc, annotations...)
	}
	writeFile(t, filepath.Join(tr.dir, m, svc+".yaml"), doc)
}

// get sends one request for svc to use1's gateway: the answering member
// ("" and the status for anything but a 200).
func (tr *tiered) get(svc string) (string, int, error) {
	code, body, err := envoytest.Get(tr.c, tr.addr, svc+".shop.svc.clusterset.local")
	if err != nil || code != http.StatusOK {
		return "", code, err
	}
	member, _, _ := strings.Cut(body, "/")
	return member, code, nil
}

// spread sends n requests for svc and counts the answering members
// ("503" and such for failures).
func (tr *tiered) spread(t testing.TB, svc string, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		m, code, err := tr.get(svc)
		switch {
		case err != nil:
			t.Fatalf("GET %s: %v", svc, err)
		case m == "":
			m = fmt.Sprint(code)
		}
		out[m]++
	}
	return out
}

// waitAll waits until every answer for svc comes from member want.
func (tr *tiered) waitAll(t testing.TB, svc, want string) time.Duration {
	t.Helper()
	return testkit.Eventually(t, svc+" answered by "+want, func() error {
		got := tr.spread(t, svc, 20)
		if got[want] != 20 {
			return fmt.Errorf("answers %v", got)
		}
		return nil
	}, testkit.Poll{Every: 2 * time.Millisecond, Within: 10 * time.Second})
}

func startTiered(t testing.TB) *tiered {
	t.Helper()
	tr := &tiered{dir: t.TempDir(), backends: map[string]*envoytest.Backend{}, c: envoytest.HTTPClient(false)}
	for i, m := range tieredMembers {
		tr.backends[m.name] = envoytest.StartBackend(t, m.name+"/pod", memberIP(i+1, 1), 0, 0, -1)
		// Every member holds namespace shop: it imports the services
		// (namespace sameness), use1 without exporting any.
		writeFile(t, filepath.Join(tr.dir, m.name, "cluster.yaml"), fixture.ClusterYAML(m.name,
			about.PropertyRegion+"="+m.region, about.PropertyJurisdiction+"="+m.jurisdiction)+
			"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
	}
	return tr
}

func (tr *tiered) serve(t testing.TB) (*controlplane.App, *envoytest.Envoy) {
	t.Helper()
	return tr.serveIn(t, "")
}

// serveIn is serve with use1's gateway in a Kubernetes zone ("": none).
func (tr *tiered) serveIn(t testing.TB, zone string) (*controlplane.App, *envoytest.Envoy) {
	t.Helper()
	cfg := controlplane.Config{Dir: tr.dir}
	cfg.Writer.GatewayPort = gatewayPort
	cfg.Writer.ListenAddress = testkit.Loopback(t, gatewayPort)
	app := cptest.StartWith(t, cfg)
	v := translate.View{Cluster: "use1", Role: translate.RoleGateway, Zone: zone}
	e := envoytest.ForView(t, app, v, "use1-gateway", true, nil)
	e.WaitSynced(t, app, "use1-gateway", v.String())
	tr.addr = fmt.Sprintf("%s:%d", cfg.Writer.ListenAddress, gatewayPort)
	return app, e
}

const (
	selSameCluster = `{"propertySelector": {"matchExpressions": [{"key": "cluster.clusterset.k8s.io", "operator": "In", "values": ["@SameAsImporter@"]}]}}`
	selSameRegion  = `{"propertySelector": {"matchProperties": {"region.topology.k8s.io": "@SameAsImporter@"}}}`
	selSameJuris   = `{"propertySelector": {"matchProperties": {"jurisdiction.eastwest.io": "@SameAsImporter@"}}}`
)

// Cluster selection, strict selection and per-member weights through a
// real Envoy east-west gateway (member use1 in us-east), real requests:
//   - api, selected by own cluster, then region, then jurisdiction and
//     exported by use2 (us-east), usw1 (us-west) and euw1: 10,000
//     requests go to use2 alone; use2 not ready moves them to usw1 (same
//     jurisdiction), never euw1; usw1 not ready too moves them to euw1,
//     the last resort;
//   - records, exported by euw1 only, strict to its jurisdiction: use1
//     gets 503, and euw1's pod sees none of it;
//   - cart, use2 weight 90 and usw1 weight 10: 10,000 requests split
//     90/10 within 2 points, and the gateway's cross-cluster counters
//     (use1 -> use2, use1 -> usw1, scraped as Prometheus does) equal
//     what each backend saw within 1%;
//   - move, a migration from usw1 to use2 in steps 100/0, 50/50, 0/100
//     under a request loop: not one request fails.
func TestTrafficPolicy(t *testing.T) {
	tr := startTiered(t)
	apiSel := "[" + selSameCluster + "," + selSameRegion + "," + selSameJuris + "]"
	for _, m := range []string{"use2", "usw1", "euw1"} {
		tr.export(t, m, "api", true, mcs.AnnotationClusterSelectors, apiSel)
	}
	tr.export(t, "euw1", "records", true, mcs.AnnotationClusterSelectors, "["+selSameJuris+"]", mcs.AnnotationClusterSelectorsStrict, "true")
	tr.export(t, "use2", "cart", true, mcs.AnnotationWeight, "90")
	tr.export(t, "usw1", "cart", true, mcs.AnnotationWeight, "10")
	tr.export(t, "usw1", "move", true, mcs.AnnotationWeight, "100")
	tr.export(t, "use2", "move", true, mcs.AnnotationWeight, "0")
	app, e := tr.serve(t)

	t.Run("the first tier with a ready endpoint takes all", func(t *testing.T) {
		if got := tr.spread(t, "api", 10000); got["use2"] != 10000 {
			t.Fatalf("10,000 requests from us-east: %v, want all to use2 (same region)", got)
		}
		tr.export(t, "use2", "api", false, mcs.AnnotationClusterSelectors, apiSel)
		moved := tr.waitAll(t, "api", "usw1")
		if got := tr.spread(t, "api", 1000); got["usw1"] != 1000 {
			t.Fatalf("use2 not ready: %v, want all to usw1 (same jurisdiction), none to euw1", got)
		}
		tr.export(t, "usw1", "api", false, mcs.AnnotationClusterSelectors, apiSel)
		tr.waitAll(t, "api", "euw1")
		t.Logf("tier 1 not ready: traffic on tier 2 within %v of the EndpointSlice change (folder write, poll every 2 ms)", moved.Round(time.Millisecond))
	})

	t.Run("a strict selection answers 503 and never crosses", func(t *testing.T) {
		before := len(tr.backends["euw1"].Requests())
		if got := tr.spread(t, "records", 200); got["503"] != 200 {
			t.Fatalf("records from US: %v, want 200 answers of 503", got)
		}
		if n := len(tr.backends["euw1"].Requests()) - before; n != 0 {
			t.Errorf("euw1's pod saw %d requests of US clients under a strict EU selection", n)
		}
	})

	t.Run("weights split a tier, and the gateway counts who it sent to", func(t *testing.T) {
		const n = 10000
		before := map[string]int{"use2": len(tr.backends["use2"].Requests()), "usw1": len(tr.backends["usw1"].Requests())}
		statsBefore := crossCluster(t, e, envoystats.Completed, "shop/cart/80", "use1")
		got := tr.spread(t, "cart", n)
		stats := crossCluster(t, e, envoystats.Completed, "shop/cart/80", "use1")
		for _, m := range []string{"use2", "usw1"} {
			seen := len(tr.backends[m].Requests()) - before[m]
			counted := stats[m] - statsBefore[m]
			if seen == 0 || counted < seen*99/100 || counted > seen*101/100 {
				t.Errorf("use1 -> %s: the gateway counted %d requests of cart, the backend saw %d (want within 1%%)", m, counted, seen)
			}
			t.Logf("cross-cluster counter use1 -> %s: %d, the backend saw %d", m, counted, seen)
		}
		share := float64(got["use2"]) / n
		if share < 0.88 || share > 0.92 || got["use2"]+got["usw1"] != n {
			t.Fatalf("%d requests with weights 90/10: %v (use2 %.1f%%), want 90%% +-2", n, got, 100*share)
		}
		t.Logf("weights 90/10 over %d requests: use2 %.2f%%", n, 100*share)
	})

	t.Run("the gateway counts the bytes each way per destination member", func(t *testing.T) {
		const n, size = 500, 1000
		var before [2]map[string]int
		seenBefore := map[string]int64{}
		for _, m := range []string{"use2", "usw1"} {
			for _, r := range tr.backends[m].Requests() {
				seenBefore[m] += r.BodyBytes
			}
		}
		before[0] = crossCluster(t, e, envoystats.RequestBytes, "shop/cart/80", "use1")
		before[1] = crossCluster(t, e, envoystats.ResponseBytes, "shop/cart/80", "use1")
		received := map[string]int{} // response body bytes the client got, by member
		for range n {
			resp, body, err := envoytest.SendBody(tr.c, http.MethodPost, "http://"+tr.addr+"/", "cart.shop.svc.clusterset.local", nil, strings.Repeat("x", size))
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("POST cart: %v %v", resp, err)
			}
			member, _, _ := strings.Cut(body, "/")
			received[member] += int(resp.ContentLength)
		}
		testkit.Eventually(t, "the bytes counted per destination member", func() error {
			req := crossCluster(t, e, envoystats.RequestBytes, "shop/cart/80", "use1")
			res := crossCluster(t, e, envoystats.ResponseBytes, "shop/cart/80", "use1")
			for _, m := range []string{"use2", "usw1"} {
				var seen int64
				for _, r := range tr.backends[m].Requests() {
					seen += r.BodyBytes
				}
				seen -= seenBefore[m]
				if got := req[m] - before[0][m]; int64(got) != seen || seen == 0 {
					return fmt.Errorf("use1 -> %s: %d request bytes counted, the backend received %d", m, got, seen)
				}
				if got := res[m] - before[1][m]; got != received[m] || got == 0 {
					return fmt.Errorf("use1 <- %s: %d response bytes counted, the client received %d", m, got, received[m])
				}
			}
			return nil
		})
		t.Logf("bytes counted per destination member equal the bytes the backends and the client saw: %v sent, %v received", n*size, received)
	})

	t.Run("a migration in steps fails no request", func(t *testing.T) {
		loop := testkit.StartLoop(t, 0, func() bool {
			m, _, err := tr.get("move")
			return err == nil && m != ""
		})
		tr.waitAll(t, "move", "usw1")
		for _, step := range [][2]string{{"50", "50"}, {"0", "100"}} {
			loop.More(200) // at the weights before the step
			tr.export(t, "usw1", "move", true, mcs.AnnotationWeight, step[0])
			tr.export(t, "use2", "move", true, mcs.AnnotationWeight, step[1])
			if step[0] == "0" {
				tr.waitAll(t, "move", "use2")
			} else {
				testkit.Eventually(t, "a 50/50 split", func() error {
					got := tr.spread(t, "move", 200)
					if got["use2"] < 60 || got["usw1"] < 60 {
						return fmt.Errorf("answers %v", got)
					}
					return nil
				})
			}
		}
		loop.More(200) // and at 0/100
		loop.Stop()
		if loop.Failed() > 0 {
			t.Fatalf("migration 100/0 -> 50/50 -> 0/100: %d of %d requests failed", loop.Failed(), loop.Sent())
		}
		t.Logf("migration 100/0 -> 50/50 -> 0/100: %d requests, none failed", loop.Sent())
	})
	e.CheckAccepted(t, app, "use1/gateway")
}

// trafficDistribution through a real Envoy gateway of use1 that says it
// runs in zone us-east-1a (node.locality.sub_zone): its view is made when
// it connects. Service near (PreferClose) has a use1 pod in us-east-1a,
// another in us-east-1b, use2's pod in us-east-1b and usw1's in
// us-east-1a. Every request goes to use1's us-east-1a pod; with it not
// ready, to use1's us-east-1b pod (the member's other zone) and to no
// other member; with both not ready, to the next tier's endpoint for the
// zone (usw1's), not use2's; with that one not ready too, to use2. A
// service without trafficDistribution is spread over both use1 pods.
func TestTrafficDistribution(t *testing.T) {
	tr := startTiered(t)
	// On the port of use1's pod: one port per slice.
	podB := envoytest.StartBackend(t, "use1/pod-b", memberIP(1, 2), tr.backends["use1"].HTTPPort, 0, -1)
	type ep struct {
		b     *envoytest.Backend
		zone  string
		ready bool
	}
	write := func(member, svc, distribution string, eps ...ep) {
		t.Helper()
		doc := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: shop}
spec: {ports: [{name: http, port: 80, appProtocol: http}]%[2]s}
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {name: %[1]s, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s-1, namespace: shop, labels: {kubernetes.io/service-name: %[1]s}}
addressType: IPv4
ports: [{name: http, port: %[3]d}]
endpoints:
`, svc, distribution, eps[0].b.HTTPPort)
		for _, e := range eps {
			doc += fmt.Sprintf("- {addresses: [%s], conditions: {ready: %t}, zone: %s}\n", e.b.IP, e.ready, e.zone)
		}
		writeFile(t, filepath.Join(tr.dir, member, svc+".yaml"), doc)
	}
	const prefer = ", trafficDistribution: PreferClose"
	use1 := func(aReady, bReady bool) {
		write("use1", "near", prefer, ep{tr.backends["use1"], "us-east-1a", aReady}, ep{podB, "us-east-1b", bReady})
	}
	use1(true, true)
	write("use1", "spread", "", ep{tr.backends["use1"], "us-east-1a", true}, ep{podB, "us-east-1b", true})
	write("use2", "near", prefer, ep{tr.backends["use2"], "us-east-1b", true})
	write("usw1", "near", prefer, ep{tr.backends["usw1"], "us-east-1a", true})
	app, _ := tr.serveIn(t, "us-east-1a")
	answers := func(svc string, n int) map[string]int {
		out := map[string]int{}
		for range n {
			code, body, err := envoytest.Get(tr.c, tr.addr, svc+".shop.svc.clusterset.local")
			if err != nil {
				t.Fatalf("GET %s: %v", svc, err)
			}
			if code != http.StatusOK {
				out[fmt.Sprint(code)]++
				continue
			}
			pod, _, _ := strings.Cut(body, " ")
			out[pod]++
		}
		return out
	}
	all := func(svc, pod string) {
		t.Helper()
		testkit.Eventually(t, svc+" on "+pod, func() error {
			if got := answers(svc, 50); got[pod] != 50 {
				return fmt.Errorf("answers %v", got)
			}
			return nil
		})
		if got := answers(svc, 1000); got[pod] != 1000 {
			t.Fatalf("%s: %v, want all 1,000 on %s", svc, got, pod)
		}
	}
	if !slices.ContainsFunc(app.Writer.Snapshot().Views, func(v translate.View) bool { return v.String() == "use1/gateway@us-east-1a" }) {
		t.Fatalf("the zone view was not made: %v", app.Writer.Snapshot().Views)
	}
	all("near", "use1/pod")
	if got := answers("spread", 1000); got["use1/pod"] < 300 || got["use1/pod-b"] < 300 || got["use1/pod"]+got["use1/pod-b"] != 1000 {
		t.Fatalf("a service without trafficDistribution: %v, want spread over both zones' pods", got)
	}
	use1(false, true)
	all("near", "use1/pod-b") // the member's other zone, no other member
	use1(false, false)
	all("near", "usw1/pod") // the next tier's endpoint for the zone first
	write("usw1", "near", prefer, ep{tr.backends["usw1"], "us-east-1a", false})
	all("near", "use2/pod")
	t.Log("PreferClose through a real Envoy in zone us-east-1a: 1,000 of 1,000 on its zone's pod; it not ready, 1,000 of 1,000 on the member's other zone; both not ready, 1,000 of 1,000 on the other members' endpoint for the zone; that not ready, on the rest")
}

// crossCluster reads an Envoy's cross-cluster counter series (requests,
// bytes) of one service port (its stat name), from source member src, by destination
// member: the series of pkg/envoystats, scraped as Prometheus does from
// the shipped bootstrap's stats listener (not the admin, which stays on
// loopback).
func crossCluster(t testing.TB, e *envoytest.Envoy, series, statName, src string) map[string]int {
	t.Helper()
	resp, err := http.Get("http://" + e.StatsAddr + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stats/prometheus on the stats listener: %d %v", resp.StatusCode, err)
	}
	body := string(raw)
	if r, err := http.Get("http://" + e.StatsAddr + "/config_dump"); err != nil || r.StatusCode != http.StatusNotFound {
		t.Errorf("the stats listener serves more of the admin than /stats/prometheus: /config_dump %v %v", r, err)
	} else {
		r.Body.Close()
	}
	out := map[string]int{}
	for _, line := range strings.Split(body, "\n") {
		name, rest, ok := strings.Cut(line, "{")
		if !ok || name != series {
			continue
		}
		labels, value, _ := strings.Cut(rest, "} ")
		l := map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			l[k] = strings.Trim(v, `"`)
		}
		if l["envoy_cluster_name"] != statName || l[envoystats.TagSource] != src {
			continue
		}
		var n int
		if _, err := fmt.Sscan(value, &n); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		out[l[envoystats.TagDestination]] += n
	}
	return out
}

// BenchmarkTierFailover is the time from an EndpointSlice change (the
// folder file written) to use1's real Envoy gateway sending every request
// to the next tier: use2 (tier 1, same region) turns not ready, traffic
// moves to usw1 (tier 2); use2 turns ready, it comes back. Each move is
// one sample, polled with a request every millisecond; p50 and p99.
//
//	go test -run '^$' -bench TierFailover -benchtime 40x ./test/envoy
func BenchmarkTierFailover(b *testing.B) {
	tr := startTiered(b)
	sel := "[" + selSameCluster + "," + selSameRegion + "," + selSameJuris + "]"
	for _, m := range []string{"use2", "usw1"} {
		tr.export(b, m, "api", true, mcs.AnnotationClusterSelectors, sel)
	}
	tr.serve(b)
	tr.waitAll(b, "api", "use2")
	var moves []time.Duration
	ready := true
	for b.Loop() {
		ready = !ready
		want := "usw1"
		if ready {
			want = "use2"
		}
		start := time.Now()
		tr.export(b, "use2", "api", ready, mcs.AnnotationClusterSelectors, sel)
		for {
			if m, _, err := tr.get("api"); err == nil && m == want {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatalf("traffic not on %s 10 s after the change", want)
			}
			time.Sleep(time.Millisecond)
		}
		moves = append(moves, time.Since(start))
	}
	percentiles(b, moves)
}
