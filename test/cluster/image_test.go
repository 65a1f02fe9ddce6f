package cluster

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/eastwest-dev/eastwest/internal/testkit"
)

// imageRunsAsAPod: the project's image (make image) runs as a real pod
// of cluster c (TestOneNode's): imported into the node from its archive, it starts as its non-root user with xds on
// PATH (`xds probe ready` as the exec readiness probe, as the chart
// runs it), serves the demo ClusterSet from a ConfigMap, and answers an
// xDS client on the pod's IP with the demo's clusters; and Envoy from
// the Debian test image, as the demo's east-west gateway, is served by it.
func imageRunsAsAPod(t *testing.T, c *Cluster) {
	ref, archive := ProjectImage(t)
	if err := c.Import(archive); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The demo folder (examples/clusterset) as a ConfigMap, its members'
	// subfolders rebuilt by the volume's item paths.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"}, Data: map[string]string{}}
	var items []corev1.KeyToPath
	files := testkit.Cases(t, filepath.Join("..", "..", "examples", "clusterset", "*", "*.yaml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		member, name := filepath.Base(filepath.Dir(f)), filepath.Base(f)
		key := member + "." + name
		cm.Data[key] = string(b)
		items = append(items, corev1.KeyToPath{Key: key, Path: member + "/" + name})
	}
	if len(items) == 0 {
		t.Fatal("no demo ClusterSet in examples/clusterset")
	}
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "xds", Namespace: "default", Labels: map[string]string{"app": "xds"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
			Containers: []corev1.Container{{
				Name: "xds", Image: ref, ImagePullPolicy: corev1.PullNever,
				Args:           []string{"serve", "--dir=/demo", "--xds-address=0.0.0.0:18000"},
				VolumeMounts:   []corev1.VolumeMount{{Name: "demo", MountPath: "/demo", ReadOnly: true}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"xds", "probe", "ready"}}}, PeriodSeconds: 1},
			}},
			Volumes: []corev1.Volume{{Name: "demo", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "demo"}, Items: items}}}},
		},
	}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ip := c.WaitPodsReady(t, "default", "app=xds", 1)[0].Status.PodIP

	conn, err := grpc.NewClient(net.JoinHostPort(ip, "18000"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpc, cancelRPC := context.WithTimeout(ctx, 30*time.Second)
	defer cancelRPC()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(rpc)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := structpb.NewStruct(map[string]any{"role": "client"})
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "test", Cluster: "east", Metadata: meta}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("xDS from the pod at %s: %v", ip, err)
	}
	if len(resp.GetResources()) == 0 {
		t.Errorf("the pod served east's client no clusters")
	}
	t.Logf("%s served %d clusters to east's client", ref, len(resp.GetResources()))

	// Envoy 1.40 from the Debian image, as east's east-west gateway of
	// the demo (make run-envoy's bootstrap, pointed at the pod), is
	// served by it: Ready (its admin /ready says LIVE once the first
	// clusters and listeners are in) and holding the demo's clusters.
	if err := c.Import(DebianImages(t)); err != nil {
		t.Fatal(err)
	}
	// A budget of its own: the import alone took minutes on a loaded
	// 2-core CI machine (the first part's budget ran out).
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bootstrap := envoyBootstrap(t, ip)
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "envoy", Namespace: "default"},
		Data: map[string]string{"envoy.json": bootstrap}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	envoy := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "envoy", Namespace: "default", Labels: map[string]string{"app": "envoy"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "envoy", Image: EnvoyImage, ImagePullPolicy: corev1.PullNever,
				Args:           []string{"-c", "/etc/envoy/envoy.json", "--service-node", "demo-gateway", "--service-cluster", "east", "--log-level", "warn"},
				VolumeMounts:   []corev1.VolumeMount{{Name: "bootstrap", MountPath: "/etc/envoy", ReadOnly: true}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(9901)}}, PeriodSeconds: 1},
			}},
			Volumes: []corev1.Volume{{Name: "bootstrap", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "envoy"}}}}},
		},
	}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, envoy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	envoyIP := c.WaitPodsReady(t, "default", "app=envoy", 1)[0].Status.PodIP
	clusters := httpGet(t, "http://"+net.JoinHostPort(envoyIP, "9901")+"/clusters")
	if !strings.Contains(clusters, "cart.shop.svc.clusterset.local:80::") {
		t.Errorf("the Envoy pod holds none of the demo's clusters (cart.shop.svc.clusterset.local:80); /clusters:\n%.2000s", clusters)
	}
	t.Logf("%s: Ready, served by the xds pod", EnvoyImage)
}

// envoyBootstrap is make run-envoy's bootstrap for east's gateway with
// the control plane at ip and the admin on every address of the pod.
func envoyBootstrap(t *testing.T, ip string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "envoy", "gateway-east.json"))
	if err != nil {
		t.Fatal(err)
	}
	var boot map[string]any
	if err := json.Unmarshal(b, &boot); err != nil {
		t.Fatal(err)
	}
	set := func(v any, addr string) {
		sa, ok := v.(map[string]any)["socket_address"].(map[string]any)
		if !ok {
			t.Fatalf("gateway-east.json: no socket_address in %v", v)
		}
		sa["address"] = addr
	}
	set(boot["admin"].(map[string]any)["address"], "0.0.0.0")
	found := false
	for _, cl := range boot["static_resources"].(map[string]any)["clusters"].([]any) {
		cm := cl.(map[string]any)
		if cm["name"] != "xds_cluster" {
			continue
		}
		for _, e := range cm["load_assignment"].(map[string]any)["endpoints"].([]any) {
			for _, lb := range e.(map[string]any)["lb_endpoints"].([]any) {
				set(lb.(map[string]any)["endpoint"].(map[string]any)["address"], ip)
				found = true
			}
		}
	}
	if !found {
		t.Fatal("gateway-east.json: no xds_cluster endpoint")
	}
	out, err := json.Marshal(boot)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// httpGet is the body of a GET that must answer 200.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url) //nolint:noctx // bounded by the client's timeout
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}
