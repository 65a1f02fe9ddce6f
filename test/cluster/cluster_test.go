package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// A real one-node cluster, one boot for two checks (each cluster boot
// costs the run half a minute of two cores): pods and Services work as
// in any cluster (podsAndServices), and the project's image runs as a
// pod and serves a real Envoy pod (imageRunsAsAPod). After the teardown
// nothing of the cluster's is left: no process, mount, cgroup, network
// namespace or route.
func TestOneNode(t *testing.T) {
	var c *Cluster
	// Registered first, so it runs after the harness's teardown.
	t.Cleanup(func() {
		if c != nil {
			if left := c.Leftovers(); len(left) > 0 {
				t.Errorf("after teardown: %v", left)
			}
		}
	})
	start := time.Now()
	c = Start(t, "one")[0]
	t.Logf("cluster ready (node and CoreDNS Ready) %v after start", time.Since(start).Round(time.Millisecond))
	t.Run("pods and Services", func(t *testing.T) { podsAndServices(t, c) })
	t.Run("the project's image as a pod", func(t *testing.T) { imageRunsAsAPod(t, c) })
}

// podsAndServices: a Deployment's pods run from an image imported
// without a registry, and a ClusterIP Service reaches both of them
// through kube-proxy's rules in the node; the pods are reachable by
// their own IPs from the test's namespace; the cluster's CoreDNS (a pod)
// answers their names.
func podsAndServices(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	labels := map[string]string{"app": "echo"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "echo", Image: EchoImage, ImagePullPolicy: corev1.PullNever,
					Env:            []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
					Ports:          []corev1.ContainerPort{{ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
				}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := c.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	pods := c.WaitPodsReady(t, "default", "app=echo", 2)
	t.Logf("2 pods Ready %v after the Deployment was created", time.Since(created).Round(time.Millisecond))
	for _, p := range pods {
		if !strings.HasPrefix(p.Status.PodIP, strings.TrimSuffix(c.PodCIDR, "0/24")) {
			t.Errorf("pod %s has IP %s, not in %s", p.Name, p.Status.PodIP, c.PodCIDR)
		}
		if got := get(t, func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", net.JoinHostPort(p.Status.PodIP, "8080"))
		}); got != p.Name {
			t.Errorf("pod %s by its IP answered %q", p.Name, got)
		}
	}
	// Through the Service's ClusterIP, from inside the node: kube-proxy,
	// once it has written the rules for the ready endpoints (until then
	// it rejects).
	viaService := func(_ context.Context, _, _ string) (net.Conn, error) {
		return c.Node.Dial(net.JoinHostPort(svc.Spec.ClusterIP, "80"), 5*time.Second)
	}
	ready := time.Now()
	for deadline := time.Now().Add(time.Minute); ; {
		conn, err := viaService(ctx, "", "")
		if err == nil {
			_ = conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Service's ClusterIP %s: %v a minute after its pods were Ready", svc.Spec.ClusterIP, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the ClusterIP answered %v after the pods were Ready", time.Since(ready).Round(time.Millisecond))
	// The cluster's own DNS (CoreDNS as a pod, behind kube-dns) names
	// the Services, asked from the node through kube-proxy.
	r := &net.Resolver{PreferGo: true, Dial: func(_ context.Context, _, _ string) (net.Conn, error) {
		return c.Node.Dial(net.JoinHostPort(DNSServiceIP, "53"), 5*time.Second)
	}}
	for name, want := range map[string]string{"kubernetes.default.svc.cluster.local": APIServiceIP, "echo.default.svc.cluster.local": svc.Spec.ClusterIP} {
		addrs, err := r.LookupHost(ctx, name)
		if err != nil || len(addrs) != 1 || addrs[0] != want {
			t.Errorf("%s from the cluster's DNS: %v %v, want %s", name, addrs, err, want)
		}
	}
	// Both pods answer, once kube-proxy has the second endpoint too (it
	// may write the first alone).
	seen := map[string]bool{}
	for deadline := time.Now().Add(30 * time.Second); len(seen) < 2 && time.Now().Before(deadline); {
		seen[get(t, viaService)] = true
	}
	if len(seen) != 2 || !seen[pods[0].Name] || !seen[pods[1].Name] {
		t.Errorf("the Service's ClusterIP reached %v, want both pods %s and %s", seen, pods[0].Name, pods[1].Name)
	}
}

// get sends one HTTP request over dial and returns the body.
func get(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) string {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	resp, err := hc.Get("http://echo/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Two clusters side by side, each its own node, joined by Flat: a pod of
// one answers requests from the other's node by its pod IP, both ways.
func TestTwoClustersFlat(t *testing.T) {
	cs := Start(t, "a", "b")
	Flat(t, cs...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pods := map[string]string{}
	for _, c := range cs {
		if _, err := c.Client.CoreV1().Pods("default").Create(ctx, echoPod("echo-"+c.Name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cs {
		p := c.WaitPodsReady(t, "default", "app=echo", 1)[0]
		pods[c.Name] = p.Status.PodIP
	}
	for _, from := range cs {
		for _, to := range cs {
			if from == to {
				continue
			}
			got := get(t, func(_ context.Context, _, _ string) (net.Conn, error) {
				return from.Node.Dial(net.JoinHostPort(pods[to.Name], "8080"), 5*time.Second)
			})
			if got != "echo-"+to.Name {
				t.Errorf("from %s's node, %s's pod %s answered %q", from.Name, to.Name, pods[to.Name], got)
			}
		}
	}
}

func echoPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "echo"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "echo", Image: EchoImage, ImagePullPolicy: corev1.PullNever,
			Env:            []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			Ports:          []corev1.ContainerPort{{ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
		}}},
	}
}

// Two clusters on separate networks: the same pod CIDR in both, the nodes
// joined only by a WAN. A NodePort Service of one is reached from the
// other's node on its WAN address (as a gateway's is); a pod IP of one,
// dialed from the other's node, never reaches it (it is the other's own
// pod network).
func TestTwoClustersSeparate(t *testing.T) {
	cs := StartWith(t, Options{Separate: true}, "a", "b")
	a, b := cs[0], cs[1]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, c := range cs {
		if _, err := c.Client.CoreV1().Pods("default").Create(ctx, echoPod("echo-"+c.Name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ips := map[string]string{}
	for _, c := range cs {
		ips[c.Name] = c.WaitPodsReady(t, "default", "app=echo", 1)[0].Status.PodIP
	}
	svc, err := b.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodePort := fmt.Sprint(svc.Spec.Ports[0].NodePort)
	var got string
	for deadline := time.Now().Add(time.Minute); ; {
		conn, err := a.Node.Dial(net.JoinHostPort(b.WAN, nodePort), 5*time.Second)
		if err == nil {
			_ = conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b's NodePort %s on its WAN address %s from a's node: %v", nodePort, b.WAN, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got = get(t, func(_ context.Context, _, _ string) (net.Conn, error) {
		return a.Node.Dial(net.JoinHostPort(b.WAN, nodePort), 5*time.Second)
	})
	if got != "echo-b" {
		t.Errorf("b's NodePort on the WAN answered %q, want b's pod", got)
	}
	// b's pod IP from a's node is a's own pod network.
	if conn, err := a.Node.Dial(net.JoinHostPort(ips["b"], "8080"), 2*time.Second); err == nil {
		answer := get(t, func(_ context.Context, _, _ string) (net.Conn, error) { return conn, nil })
		if answer == "echo-b" {
			t.Errorf("b's pod IP %s reached b's pod from a's node across separate networks", ips["b"])
		}
	}
}
