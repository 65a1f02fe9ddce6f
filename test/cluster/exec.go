package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// Exec runs a command in a pod's (first) container, as kubectl exec
// does, and returns its standard output; an error carries its standard
// error.
func (c *Cluster) Exec(ctx context.Context, namespace, pod string, command ...string) (string, error) {
	req := c.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(c.Config, "POST", req.URL())
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		return stdout.String(), fmt.Errorf("%s: exec %v in %s/%s: %w: %s", c.Name, command, namespace, pod, err, stderr.String())
	}
	return stdout.String(), nil
}

// Logs is a pod's (first) container's log.
func (c *Cluster) Logs(ctx context.Context, namespace, pod string) (string, error) {
	b, err := c.Client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
	return string(b), err
}

// ProjectImage is the project's image as make image built it: its name
// (the OCI layout's index) and the archive to Import.
func ProjectImage(t testing.TB) (ref, archive string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", ".cache", "image")
	layout := filepath.Join(root, "oci")
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
	return idx.Manifests[0].Annotations["io.containerd.image.name"], filepath.Join(root, "xds.oci.tar")
}
