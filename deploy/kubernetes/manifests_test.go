package kubernetes

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/eastwest-dev/eastwest/pkg/controlplane"
)

// The manifests are Kubernetes objects, each with apiVersion, kind and
// name, and hold what the docs promise.
func TestManifests(t *testing.T) {
	tests := map[string][]string{
		"member-rbac.yaml":   {"ClusterRole/eastwest-member", "ClusterRoleBinding/eastwest-member", "ServiceAccount/eastwest"},
		"control-plane.yaml": {"Deployment/eastwest", "Role/eastwest-control-plane", "Service/eastwest"},
		"gateway-envoy.yaml": {"ConfigMap/envoy-public", "Deployment/envoy-public", "Service/envoy-public", "Certificate/envoy-public-xds"},
		"certificates.yaml":  {"ClusterIssuer/eastwest-ca", "Certificate/eastwest-xds", "Certificate/eastwest-gateway-xds", "Certificate/my-app-xds"},
	}
	for file, want := range tests {
		var got []string
		for _, u := range objects(t, file) {
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
	want, err := os.ReadFile("../envoy/gateway-api-bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objects(t, "gateway-envoy.yaml") {
		if u.GetKind() != "ConfigMap" {
			continue
		}
		got, _, _ := unstructured.NestedString(u.Object, "data", "bootstrap.yaml")
		if got != string(want) {
			t.Errorf("the ConfigMap's bootstrap.yaml differs from deploy/envoy/gateway-api-bootstrap.yaml")
		}
		return
	}
	t.Fatal("no ConfigMap with bootstrap.yaml")
}

// Each shipped client Certificate carries the identity eastwest requires
// of the node its client claims: the Gateway's Envoys (gateway-envoy.yaml
// with its bootstrap), an east-west gateway and a gRPC client of "east".
func TestShippedIdentitiesAuthorizeTheirNodes(t *testing.T) {
	uris := map[string]string{} // Certificate name -> URI SAN
	for _, file := range []string{"gateway-envoy.yaml", "certificates.yaml"} {
		for _, u := range objects(t, file) {
			if list, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "uris"); u.GetKind() == "Certificate" && len(list) == 1 {
				uris[u.GetName()] = list[0]
			}
		}
	}
	meta := func(kv ...string) *structpb.Struct {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		s, _ := structpb.NewStruct(m)
		return s
	}
	tests := map[string]*corev3.Node{
		"envoy-public-xds":     {Id: "envoy-public-1", Cluster: "east", Metadata: meta("role", "gateway-api", "gateway", "shop/public")},
		"eastwest-gateway-xds": {Id: "gw-1", Cluster: "east", Metadata: meta("role", "gateway")},
		"my-app-xds":           {Id: "my-app", Cluster: "east", Metadata: meta("role", "client")},
	}
	policy := controlplane.IdentityPolicy{Required: true, ClusterSet: "demo"}
	for cert, node := range tests {
		t.Run(cert, func(t *testing.T) {
			u, err := url.Parse(uris[cert])
			if err != nil || uris[cert] == "" {
				t.Fatalf("Certificate %s has no URI SAN (%v)", cert, err)
			}
			c := &x509.Certificate{URIs: []*url.URL{u}}
			ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)},
				AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}}})
			_, auth := policy.Authenticate(ctx)
			if err := auth(node, resourcev3.SecretType); err != nil {
				t.Errorf("%s does not authorize its node: %v", uris[cert], err)
			}
		})
	}
}

// objects decodes every object of a manifest file.
func objects(t *testing.T, file string) []unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []unstructured.Unstructured
	d := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var u unstructured.Unstructured
		if err := d.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, u)
	}
}
