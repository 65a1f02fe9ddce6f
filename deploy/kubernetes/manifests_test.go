// Package kubernetes holds the Kubernetes manifests eastwest ships: the
// RBAC a member cluster grants and the control plane's Deployment.
package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
)

// The manifests are Kubernetes objects, each with apiVersion, kind and
// name, and hold what the docs promise.
func TestManifests(t *testing.T) {
	tests := map[string][]string{
		"member-rbac.yaml":   {"ClusterRole/eastwest-member", "ClusterRoleBinding/eastwest-member", "ServiceAccount/eastwest"},
		"control-plane.yaml": {"Deployment/eastwest", "Role/eastwest-control-plane", "Service/eastwest"},
		"gateway-envoy.yaml": {"ConfigMap/envoy-public", "Deployment/envoy-public", "Service/envoy-public"},
	}
	for file, want := range tests {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		d := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var u unstructured.Unstructured
			if err := d.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s: %v", file, err)
			}
			if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
				t.Errorf("%s: incomplete object %v", file, u.Object)
			}
			got = append(got, u.GetKind()+"/"+u.GetName())
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s lacks %s (has %v)", file, w, got)
			}
		}
	}
}

// The Envoy ConfigMap for a Gateway carries the sample bootstrap of
// deploy/envoy as it is (which that package validates): one bootstrap,
// never two that drift apart.
func TestGatewayEnvoyBootstrapIsTheSample(t *testing.T) {
	b, err := os.ReadFile("gateway-envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../envoy/gateway-api-bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var u unstructured.Unstructured
		if err := d.Decode(&u.Object); err != nil {
			t.Fatal("no ConfigMap with bootstrap.yaml:", err)
		}
		if u.GetKind() != "ConfigMap" {
			continue
		}
		got, _, _ := unstructured.NestedString(u.Object, "data", "bootstrap.yaml")
		if got != string(want) {
			t.Errorf("the ConfigMap's bootstrap.yaml differs from deploy/envoy/gateway-api-bootstrap.yaml")
		}
		return
	}
}
