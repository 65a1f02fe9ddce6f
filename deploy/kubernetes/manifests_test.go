package kubernetes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/eastwest-dev/eastwest/internal/manifest"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// The manifests are Kubernetes objects, each with apiVersion, kind and
// name, and hold what the docs promise.
func TestManifests(t *testing.T) {
	tests := map[string][]string{
		"member-rbac.yaml":    {"ClusterRole/eastwest-member", "ClusterRoleBinding/eastwest-member", "ServiceAccount/eastwest"},
		"control-plane.yaml":  {"Namespace/eastwest-system", "Deployment/eastwest", "Role/eastwest-control-plane", "Service/eastwest", "Certificate/eastwest-xds", "PodDisruptionBudget/eastwest"},
		"gateway-envoy.yaml":  {"ConfigMap/envoy-public", "Deployment/envoy-public", "Service/envoy-public", "Certificate/envoy-public-xds"},
		"certificates.yaml":   {"ClusterIssuer/eastwest-ca", "Certificate/eastwest-ca", "Certificate/my-app-xds"},
		"prometheusrule.yaml": {"PrometheusRule/eastwest"},
		"eastwest-gateway.yaml": {"ConfigMap/eastwest-gateway", "Certificate/eastwest-tunnel", "Deployment/eastwest-gateway",
			"PodDisruptionBudget/eastwest-gateway", "Service/eastwest-gateway", "Service/eastwest-gateway-local"},
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

// The Envoy ConfigMaps (a Gateway's, an east-west gateway's) carry the
// sample bootstraps of deploy/envoy as they are (which that package
// validates): one bootstrap, never two that drift apart.
func TestEnvoyBootstrapsAreTheSamples(t *testing.T) {
	for manifest, sample := range map[string]string{
		"gateway-envoy.yaml":    "../envoy/gateway-api-bootstrap.yaml",
		"eastwest-gateway.yaml": "../envoy/bootstrap.yaml",
	} {
		want, err := os.ReadFile(sample)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, u := range objects(t, manifest) {
			if u.GetKind() != "ConfigMap" {
				continue
			}
			found = true
			got, _, _ := unstructured.NestedString(u.Object, "data", "bootstrap.yaml")
			if got != string(want) {
				t.Errorf("%s: the ConfigMap's bootstrap.yaml differs from %s", manifest, sample)
			}
		}
		if !found {
			t.Errorf("%s: no ConfigMap with bootstrap.yaml", manifest)
		}
	}
}

// Each shipped client Certificate carries the identity eastwest requires
// of the node its client claims: the Gateway's Envoys (gateway-envoy.yaml
// with its bootstrap), an east-west gateway and a gRPC client of "east".
func TestShippedIdentitiesAuthorizeTheirNodes(t *testing.T) {
	uris := map[string]string{} // Certificate name -> URI SAN
	for _, file := range []string{"gateway-envoy.yaml", "certificates.yaml", "eastwest-gateway.yaml"} {
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
		"envoy-public-xds": {Id: "envoy-public-1", Cluster: "east", Metadata: meta("role", "gateway-api", "gateway", "shop/public")},
		"eastwest-tunnel":  {Id: "gw-2", Cluster: "east", Metadata: meta("role", "gateway")},
		"my-app-xds":       {Id: "my-app", Cluster: "east", Metadata: meta("role", "client")},
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
	out, err := manifest.File(file)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The shipped east-west gateway, once its load balancer has an address,
// is what eastwest reads as the member's gateways: tunnel addresses on
// port 15443, the in-cluster HTTP address of proxyless clients, the
// tunnel Secret its Certificate makes, and nothing to report; the
// Certificate's identity is one that peers' tunnels accept.
func TestShippedGatewayIsReadAsTheMembersGateway(t *testing.T) {
	s := mcs.NewStore(mcs.Options{})
	var uri, secret string
	for _, u := range objects(t, "eastwest-gateway.yaml") {
		switch u.GetKind() {
		case "Service":
			var svc corev1.Service
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &svc); err != nil {
				t.Fatal(err)
			}
			if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.10"}}
			} else {
				svc.Spec.ClusterIP = "10.96.0.20"
			}
			if err := s.Apply(event.Event{Member: "east", Op: event.OpUpsert, Object: &svc}); err != nil {
				t.Fatal(err)
			}
		case "Certificate":
			list, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "uris")
			uri = list[0]
			secret, _, _ = unstructured.NestedString(u.Object, "spec", "secretName")
		}
	}
	s.Flush()
	c := s.State().Clusters[0]
	if len(c.Gateways) != 1 || c.Gateways[0].Address != "203.0.113.10" || c.Gateways[0].Port != mcs.DefaultTunnelPort {
		t.Errorf("gateway addresses %+v, want 203.0.113.10:15443", c.Gateways)
	}
	if c.LocalGateway == nil || c.LocalGateway.Address != "10.96.0.20" || c.LocalGateway.Port != mcs.DefaultGatewayHTTPPort {
		t.Errorf("local gateway %+v, want 10.96.0.20:15080", c.LocalGateway)
	}
	if c.TunnelSecret != "eastwest-system/"+secret || c.GatewayError != "" {
		t.Errorf("tunnel Secret %q (error %q), want the Certificate's eastwest-system/%s", c.TunnelSecret, c.GatewayError, secret)
	}
	accepted := false
	for _, m := range (&translate.Topology{ClusterSet: "demo", Members: map[mcs.ClusterID]translate.NetworkMember{c.ID: {}}}).PeerMatchers() {
		accepted = accepted || m.GetMatcher().GetExact() == uri
	}
	if !accepted {
		t.Errorf("the tunnel Certificate's URI %s is not the gateway identity of member %s that peers accept", uri, c.ID)
	}
}
