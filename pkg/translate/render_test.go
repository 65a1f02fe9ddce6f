package translate

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Printed resources never carry key material: a Secret's certificate and
// key become a short hash (different keys, different hashes), and the
// Secret that is served keeps its bytes.
func TestRedactSecrets(t *testing.T) {
	secret := func(key string) *tlsv3.Secret {
		return &tlsv3.Secret{Name: "s", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte("CERT")}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte(key)}},
		}}}
	}
	a, b := secret("-----BEGIN PRIVATE KEY----- one"), secret("-----BEGIN PRIVATE KEY----- two")
	outA, err := YAML([]Resource{{Type: resourcev3.SecretType, Name: "s", Message: a}})
	if err != nil {
		t.Fatal(err)
	}
	outB, _ := YAML([]Resource{{Type: resourcev3.SecretType, Name: "s", Message: b}})
	for _, out := range []string{string(outA), string(outB)} {
		if strings.Contains(out, "PRIVATE") || strings.Contains(out, "LS0t") || !strings.Contains(out, "[redacted sha256:") {
			t.Errorf("printed secret:\n%s", out)
		}
	}
	if string(outA) == string(outB) {
		t.Error("two different keys print the same")
	}
	if !proto.Equal(a, secret("-----BEGIN PRIVATE KEY----- one")) {
		t.Error("Redact changed the served secret")
	}
}
