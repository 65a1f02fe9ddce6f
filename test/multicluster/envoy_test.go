package multicluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
	"github.com/eastwest-dev/eastwest/test/kube"
	"github.com/eastwest-dev/eastwest/test/netns"
)

// envoyGatewayPort is the east-west gateway port of this package's
// Envoys (another package's tests use the default at the same time).
const envoyGatewayPort = 15181

// podSlice writes a Service's EndpointSlice with one endpoint per ip on
// port 8080, ready as given.
func (m *member) podSlice(t testing.TB, ns, svc string, ips []string, ready []bool) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-src", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for i, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready[i])}})
	}
	m.writeSlice(t, es)
}

// writeSlice creates the EndpointSlice, or replaces its endpoints.
func (m *member) writeSlice(t testing.TB, es *discoveryv1.EndpointSlice) {
	t.Helper()
	api := m.Client.DiscoveryV1().EndpointSlices(es.Namespace)
	cur, err := api.Get(ctx, es.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, es, metav1.CreateOptions{})
	} else if err == nil {
		cur.Endpoints = es.Endpoints
		_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// envoyClusterSet is two real member clusters, a control plane reading
// them, and a real Envoy east-west gateway of member a. Pods are HTTP
// backends on 10.214.<m>.<n>:8080 and the Envoy runs beside them, in a
// network namespace of the test (an apiserver refuses loopback
// addresses in EndpointSlices); the control plane serves xDS on the
// test's end of the namespace's veth.
type envoyClusterSet struct {
	a, b  *member
	app   *controlplane.App
	envoy *envoytest.Envoy
	pods  map[string]*envoytest.Backend
	addr  string
}

var podIPs = map[string]string{"a/web-0": "10.214.1.1", "a/web-1": "10.214.1.2", "b/web-0": "10.214.2.1"}

func startEnvoyClusterSet(t testing.TB) *envoyClusterSet {
	t.Helper()
	cs := kube.Start(t, "a", "b")
	ns := netns.New(t)
	e := &envoyClusterSet{a: &member{Cluster: cs[0], mcs: mustMCS(t, cs[0])}, b: &member{Cluster: cs[1], mcs: mustMCS(t, cs[1])},
		pods: map[string]*envoytest.Backend{}, addr: fmt.Sprintf("%s:%d", ns.NSIP, envoyGatewayPort)}
	cfg := controlplane.Config{KubeconfigDir: kubeconfigDir(t, cs...), WriteBack: true, XDSAddress: ns.HostIP + ":0"}
	cfg.Writer.GatewayPort = envoyGatewayPort
	e.app = cptest.StartWith(t, cfg)
	for name, ip := range podIPs {
		ns.AddAddr(t, ip)
		e.pods[name] = envoytest.StartBackendWith(t, ns.Listen, name, ip, 8080, 0, -1)
	}
	for _, m := range []*member{e.a, e.b} {
		m.namespace(t, "envoy")
		m.service(t, clusterIPService("envoy", "web"))
		m.export(t, "envoy", "web")
	}
	e.a.podSlice(t, "envoy", "web", []string{podIPs["a/web-0"], podIPs["a/web-1"]}, []bool{true, false})
	e.b.podSlice(t, "envoy", "web", []string{podIPs["b/web-0"]}, []bool{true})
	v := translate.View{Cluster: "a", Role: translate.RoleGateway}
	e.envoy = envoytest.ForViewIn(t, ns, e.app, v, "a-gateway", true, nil)
	e.envoy.WaitSynced(t, e.app, "a-gateway", v.String())
	e.waitBackend(t, "a/web-0")
	return e
}

// answer sends one request for the service through the Envoy.
func (e *envoyClusterSet) answer() (string, error) {
	code, body, err := envoytest.Get(envoytest.HTTPClient(false), e.addr, "web.envoy.svc.clusterset.local")
	if err != nil {
		return "", err
	}
	if code != 200 {
		return "", fmt.Errorf("%d %s", code, body)
	}
	return strings.Fields(body)[0], nil
}

// waitBackend waits until the Envoy sends the service's traffic to pod.
func (e *envoyClusterSet) waitBackend(t testing.TB, pod string) {
	t.Helper()
	testkit.Eventually(t, "traffic to "+pod, func() error {
		got, err := e.answer()
		if err != nil {
			return err
		}
		if got != pod {
			return fmt.Errorf("answered by %q", got)
		}
		return nil
	})
}

// With real member apiservers and a real Envoy: traffic through the
// Envoy keeps flowing to the local member, without one failed request,
// while that member's apiserver is down (its last known state is kept);
// when it returns, a change made there reaches the Envoy.
func TestEnvoyThroughAnApiserverOutage(t *testing.T) {
	e := startEnvoyClusterSet(t)
	loop := testkit.StartLoop(t, 5*time.Millisecond, func() bool {
		got, err := e.answer()
		return err == nil && got == "a/web-0"
	})
	e.a.StopAPIServer()
	down := loop.Sent()
	// The outage lasts until requests have gone through it (a count, not
	// a time).
	loop.More(200)
	if err := e.a.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	loop.Stop()
	t.Logf("%d requests through Envoy, %d during a's apiserver outage; %d failed", loop.Sent(), loop.Sent()-down, loop.Failed())
	if loop.Failed() > 0 {
		t.Errorf("%d of %d requests failed during the outage", loop.Failed(), loop.Sent())
	}
	// a is back: a change made in its apiserver reaches the Envoy.
	e.a.podSlice(t, "envoy", "web", []string{podIPs["a/web-0"], podIPs["a/web-1"]}, []bool{false, true})
	e.waitBackend(t, "a/web-1")
}

// BenchmarkEndpointSliceToEnvoy measures the time from an EndpointSlice
// write in a member's apiserver (which of its two pods is ready) to the
// traffic through a real Envoy gateway of that member moving to the other
// pod: run with -benchtime 100x for 100 changes.
func BenchmarkEndpointSliceToEnvoy(b *testing.B) {
	e := startEnvoyClusterSet(b)
	ips := []string{podIPs["a/web-0"], podIPs["a/web-1"]}
	var lat []time.Duration
	ready := 0
	for b.Loop() {
		ready = 1 - ready
		want := fmt.Sprint("a/web-", ready)
		start := time.Now()
		e.a.podSlice(b, "envoy", "web", ips, []bool{ready == 0, ready == 1})
		for {
			if got, err := e.answer(); err == nil && got == want {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatalf("traffic did not move to %s within 10s", want)
			}
		}
		lat = append(lat, time.Since(start))
	}
	percentiles(b, lat)
}
