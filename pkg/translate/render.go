package translate

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// YAML renders resources as a multi-document YAML stream, each document
// the resource's protojson (wrapped in an Any, so it names its type),
// preceded by a comment with its type and name. The output is
// deterministic: it is what golden files and `xds translate` show.
func YAML(resources []Resource) ([]byte, error) {
	var b bytes.Buffer
	for _, r := range resources {
		a, err := anypb.New(Redact(r.Message))
		if err != nil {
			return nil, err
		}
		js, err := protojson.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", TypeName(r.Type), r.Name, err)
		}
		// Re-encoding through YAML also removes protojson's deliberately
		// unstable whitespace.
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "---\n# %s %s\n", TypeName(r.Type), r.Name)
		b.Write(y)
	}
	return b.Bytes(), nil
}

// Redact returns a copy of a Secret with its key material replaced by a
// short SHA-256 of it (enough to tell two certificates apart); other
// messages are returned as they are. Everything eastwest prints (config
// dumps, `xds translate`, golden files) goes through it.
func Redact(m proto.Message) proto.Message {
	s, ok := m.(*tlsv3.Secret)
	if !ok {
		return m
	}
	c := proto.Clone(s).(*tlsv3.Secret)
	redact := func(d *corev3.DataSource) *corev3.DataSource {
		if d == nil {
			return nil
		}
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(d) // a DataSource always marshals
		sum := sha256.Sum256(b)
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: fmt.Sprintf("[redacted sha256:%x]", sum[:6])}}
	}
	if t := c.GetTlsCertificate(); t != nil {
		t.CertificateChain = redact(t.CertificateChain)
		t.PrivateKey = redact(t.PrivateKey)
	}
	return c
}
