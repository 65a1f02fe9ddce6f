package assemble_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/assemble"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// A tunnel listener accepts only the certificates the members' tunnel
// Secrets hold (their hashes, on top of the CA and identity checks: a
// certificate for a member's gateway identity that its Secret never held,
// minted by another member's issuer say, opens no tunnel), and a new
// certificate is announced to every peer before its member's gateways
// present it (RotationDelay), since the peers' and the member's updates
// reach different Envoys in any order. The previous one stays accepted
// until the next rotation.
func TestTunnelRotationAnnouncedFirst(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	f := newFolder(t)
	f.asm = assemble.New(assemble.Options{KeepViews: true, Now: func() time.Time { return now }, RotationDelay: 3 * time.Second})
	for _, in := range goldenCases(t)["networks"] {
		f.put(in)
	}
	f.step()
	east := translate.View{Cluster: "east", Role: translate.RoleGateway}
	west := translate.View{Cluster: "west", Role: translate.RoleGateway}
	secret := func(v translate.View, name string) *tlsv3.Secret {
		for _, r := range f.asm.View(v).Resources {
			if r.Name == name {
				return r.Message.(*tlsv3.Secret)
			}
		}
		t.Fatalf("%s has no Secret %s", v, name)
		return nil
	}
	presented := func() string {
		return leafHash(t, secret(east, translate.TunnelCertificateSecret).GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	}
	// What west accepts from east: on its tunnel listener, and dialing
	// east.
	accepted := func() (inbound, dialing []string) {
		return secret(west, translate.TunnelTrustSecret).GetValidationContext().GetVerifyCertificateHash(),
			secret(west, translate.TunnelPeerSecret("east")).GetValidationContext().GetVerifyCertificateHash()
	}
	first := presented()
	in, out := accepted()
	if !slices.Contains(in, first) || !slices.Equal(out, []string{first}) {
		t.Fatalf("west accepts %v inbound and %v from east, want east's %s in both", in, out, first)
	}

	rotate := func() string {
		t.Helper()
		leaf := cptest.NewCA(t).Gateway(t, "spiffe://eastwest.io/clusterset/x/cluster/east/role/gateway")
		cert, key := leaf.PEM(t)
		writeTunnelSecret(t, filepath.Join(f.dir, "east", "cluster.yaml"), cert, key)
		return leafHash(t, []byte(cert))
	}
	second := rotate()
	f.step()
	if got := presented(); got != first {
		t.Errorf("east presents its new certificate at once; want the old one until the peers accept the new one")
	}
	in, out = accepted()
	for _, h := range []string{first, second} {
		if !slices.Contains(in, h) || !slices.Contains(out, h) {
			t.Errorf("west does not accept %s yet (inbound %v, dialing east %v)", h, in, out)
		}
	}
	if due := f.asm.Due(); !due.Equal(now.Add(3 * time.Second)) {
		t.Errorf("due %v, want %v", due, now.Add(3*time.Second))
	}

	now = now.Add(3 * time.Second)
	f.step()
	if got := presented(); got != second {
		t.Errorf("after the delay east presents %s, want the new %s", got, second)
	}
	if !f.asm.Due().IsZero() {
		t.Errorf("still due at %v", f.asm.Due())
	}
	in, out = accepted()
	if !slices.Contains(in, first) || !slices.Contains(out, first) {
		t.Errorf("the previous certificate is no longer accepted right after the rotation")
	}

	third := rotate()
	f.step()
	now = now.Add(3 * time.Second)
	f.step()
	in, out = accepted()
	if slices.Contains(in, first) || slices.Contains(out, first) || !slices.Contains(out, third) || presented() != third {
		t.Errorf("after a second rotation: inbound %v, dialing east %v, presented %s; want %s and %s accepted alone", in, out, presented(), second, third)
	}
}

func leafHash(t *testing.T, chain []byte) string {
	t.Helper()
	b, _ := pem.Decode(chain)
	if b == nil {
		t.Fatalf("no PEM in %q", chain)
	}
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:])
}

// writeTunnelSecret replaces the tunnel Secret in a member's file with
// one holding cert and key (ca.crt kept).
func writeTunnelSecret(t *testing.T, file, cert, key string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	found := false
	for i, doc := range docs {
		var s corev1.Secret
		if yaml.Unmarshal([]byte(doc), &s) != nil || s.Kind != "Secret" || s.Name != "eastwest-tunnel" {
			continue
		}
		s.StringData[corev1.TLSCertKey], s.StringData[corev1.TLSPrivateKeyKey] = cert, key
		s.TypeMeta, s.ObjectMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace}
		out, err := yaml.Marshal(&s)
		if err != nil {
			t.Fatal(err)
		}
		docs[i], found = string(out), true
	}
	if !found {
		t.Fatalf("no tunnel Secret in %s", file)
	}
	if err := os.WriteFile(file, []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
}
