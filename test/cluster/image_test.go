package cluster

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
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
	"k8s.io/utils/ptr"
)

// The project's image (make image) runs as a real pod: imported into
// the node from its archive, it starts as its non-root user with xds on
// PATH (`xds probe ready` as the exec readiness probe, as the chart
// runs it), serves the demo ClusterSet from a ConfigMap, and answers an
// xDS client on the pod's IP with the demo's clusters.
func TestImageRunsAsAPod(t *testing.T) {
	root := filepath.Join("..", "..", ".cache", "image")
	ref := imageRef(t, filepath.Join(root, "oci"))
	c := Start(t, "img")[0]
	if err := c.Import(filepath.Join(root, "xds.oci.tar")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The demo folder (examples/clusterset) as a ConfigMap, its members'
	// subfolders rebuilt by the volume's item paths.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"}, Data: map[string]string{}}
	var items []corev1.KeyToPath
	files, _ := filepath.Glob(filepath.Join("..", "..", "examples", "clusterset", "*", "*.yaml"))
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
}

// imageRef is the name make image gave the image (the layout's index).
func imageRef(t *testing.T, layout string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatalf("no image in %s: run `make image` (%v)", layout, err)
	}
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil || len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["io.containerd.image.name"] == "" {
		t.Fatalf("%s/index.json names no image (%v)", layout, err)
	}
	return idx.Manifests[0].Annotations["io.containerd.image.name"]
}
