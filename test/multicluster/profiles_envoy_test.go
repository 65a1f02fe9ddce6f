package multicluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
	"github.com/eastwest-dev/eastwest/test/kube"
	"github.com/eastwest-dev/eastwest/test/netns"
)

// Members from ClusterProfiles, served to a real Envoy: traffic through
// member ea's gateway keeps flowing, without one failed request, while
// both members' tokens are rotated and the old ones revoked and the
// write-back keeps writing; and a profile created is served: from the
// profile's creation to the Envoy sending the member's traffic (timed
// over repeated joins, each after the profile was deleted and its
// member drained).
func TestClusterProfilesThroughEnvoy(t *testing.T) {
	clusters := kube.Start(t, "hub", "ea", "eb")
	inv := startInventory(t, clusters[0])
	ea, eb := &member{Cluster: clusters[1], mcs: mustMCS(t, clusters[1])}, &member{Cluster: clusters[2], mcs: mustMCS(t, clusters[2])}
	const ns = "envoy"
	tokens := map[string]string{}
	for _, m := range []*member{ea, eb} {
		apply(t, m.Cluster, "../../deploy/kubernetes/member-rbac.yaml")
		m.namespace(t, ns)
		tokens[m.Name] = boundToken(t, m.Cluster, "token-1")
		inv.token(t, m.Name, tokens[m.Name])
	}
	netNS := netns.New(t)
	pods := map[string]string{"ea/web-0": "10.214.11.1", "eb/solo-0": "10.214.12.1"}
	for name, ip := range pods {
		netNS.AddAddr(t, ip)
		envoytest.StartBackendWith(t, netNS.Listen, name, ip, 8080, 0, -1)
	}
	ea.service(t, clusterIPService(ns, "web"))
	ea.export(t, ns, "web")
	ea.podSlice(t, ns, "web", []string{pods["ea/web-0"]}, []bool{true})
	eb.service(t, clusterIPService(ns, "solo"))
	eb.export(t, ns, "solo")
	eb.podSlice(t, ns, "solo", []string{pods["eb/solo-0"]}, []bool{true})

	cfg := controlplane.Config{WriteBack: true, Resync: time.Minute, XDSAddress: netNS.HostIP + ":0",
		Profiles: &source.Profiles{Client: inv.cp, Namespace: inv.ns, ProviderFile: inv.provider}}
	cfg.Writer.GatewayPort = envoyGatewayPort
	app := cptest.StartWith(t, cfg)
	inv.profile(t, "ea", accessTo(t, ea.Cluster, "ea"), metav1.ConditionTrue, nil)
	memberStatus(t, app, "ea", synced)
	v := translate.View{Cluster: "ea", Role: translate.RoleGateway}
	envoy := envoytest.ForViewIn(t, netNS, app, v, "ea-gateway", true, nil)
	envoy.WaitSynced(t, app, "ea-gateway", v.String())
	addr := fmt.Sprintf("%s:%d", netNS.NSIP, envoyGatewayPort)
	answer := func(host string) (string, error) {
		code, body, err := envoytest.Get(envoytest.HTTPClient(false), addr, host+"."+ns+".svc.clusterset.local")
		if err != nil {
			return "", err
		}
		if code != 200 {
			return "", fmt.Errorf("%d %s", code, body)
		}
		return strings.Fields(body)[0], nil
	}
	servedBy := func(host, pod string) func() error {
		return func() error {
			got, err := answer(host)
			if err != nil {
				return err
			}
			if got != pod {
				return fmt.Errorf("answered by %q", got)
			}
			return nil
		}
	}
	testkit.Eventually(t, "web through ea's gateway", servedBy("web", "ea/web-0"))

	t.Run("a profile created is served", func(t *testing.T) {
		var lat []time.Duration
		for i := range 10 {
			start := time.Now()
			inv.profile(t, "eb", accessTo(t, eb.Cluster, "eb"), metav1.ConditionTrue, nil)
			testkit.Eventually(t, "solo through ea's gateway", servedBy("solo", "eb/solo-0"))
			lat = append(lat, time.Since(start))
			if i == 9 {
				break
			}
			if err := inv.cp.ApisV1alpha1().ClusterProfiles(inv.ns).Delete(ctx, "eb", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, "eb drained", func() error {
				if _, err := answer("solo"); err == nil {
					return fmt.Errorf("solo still served")
				}
				return nil
			})
		}
		slices.Sort(lat)
		t.Logf("ClusterProfile created -> its member's endpoints carry traffic through a real Envoy: p50 %v, max (p99 of 10) %v, over %v",
			lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), lat)
	})

	t.Run("tokens rotated and revoked under traffic and write-back", func(t *testing.T) {
		ea.importIs(t, ns, "solo", nil)
		loop := testkit.StartLoop(t, 5*time.Millisecond, func() bool {
			got, err := answer("web")
			return err == nil && got == "ea/web-0"
		})
		failed := memberFailures(t, app, "ea") + memberFailures(t, app, "eb")
		for _, m := range []*member{ea, eb} {
			inv.token(t, m.Name, boundToken(t, m.Cluster, "token-2"))
			revoke(t, m.Cluster, "token-1", tokens[m.Name])
		}
		// The write-back writes into ea what changed in eb, with ea's
		// new token (eb's informers read it with eb's).
		for i := range 5 {
			ip := fmt.Sprintf("10.214.12.%d", 10+i)
			eb.podSlice(t, ns, "solo", []string{pods["eb/solo-0"], ip}, []bool{true, true})
			ea.mcsSliceHas(t, ns, "solo", ip)
		}
		loop.More(200)
		loop.Stop()
		t.Logf("%d requests through Envoy while both tokens rotated and were revoked; %d failed", loop.Sent(), loop.Failed())
		if loop.Failed() > 0 {
			t.Errorf("%d of %d requests failed", loop.Failed(), loop.Sent())
		}
		if n := memberFailures(t, app, "ea") + memberFailures(t, app, "eb"); n != failed {
			t.Errorf("%v write-back passes failed after the rotation (%+v)", n-failed, app.WriteBack().Retrying)
		}
		for _, name := range []string{"ea", "eb"} {
			memberStatus(t, app, name, synced)
		}
	})
}
