package provision_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// A member's CA signs its Gateways' Envoys' certificates, and a Secret is
// issued again only when it must be: another identity, another CA, a
// ca.crt that is not the issuer's, or a third of its life left.
func TestIssuerRenewal(t *testing.T) {
	ca, other := cptest.NewCA(t), cptest.NewCA(t)
	caKey := ca.KeyPEM(t)
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	is, err := provision.ParseIssuer(caPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	const id = "spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway-api/gateway/shop/public"
	// The test CA lives a day: certificates of 12 hours.
	now := time.Now()
	const life = 12 * time.Hour
	cert, key, err := is.Issue(id, life, now)
	if err != nil || len(key) == 0 {
		t.Fatal(err)
	}
	otherPEM, err := os.ReadFile(other.File)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := other.KeyPEM(t)
	otherIssuer, err := provision.ParseIssuer(otherPEM, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		is        *provision.Issuer
		ca        []byte
		identity  string
		now       time.Time
		wantRenew bool
	}{
		{"fresh", is, caPEM, id, now, false},
		{"under two thirds through", is, caPEM, id, now.Add(7 * time.Hour), false},
		{"under a third left", is, caPEM, id, now.Add(9 * time.Hour), true},
		{"another identity", is, caPEM, id + "x", now, true},
		{"another CA", otherIssuer, otherPEM, id, now, true},
		{"another ca.crt", is, otherPEM, id, now, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			why := tc.is.Renew(cert, tc.ca, tc.identity, life, tc.now)
			if (why != "") != tc.wantRenew {
				t.Errorf("Renew = %q, want renewal %v", why, tc.wantRenew)
			}
		})
	}
	if _, err := provision.ParseIssuer(cert, key); err == nil {
		t.Error("a leaf certificate was taken for a CA")
	}
}

// A member's CA is taken as an issuer when it is a CA: basic constraints
// CA, and certSign among its key usages when it has any (openssl req
// -x509 makes CAs without the extension, which may sign).
func TestParseIssuer(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	tests := []struct {
		name  string
		isCA  bool
		usage x509.KeyUsage
		ok    bool
	}{
		{"CA with certSign", true, x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, true},
		{"CA without key usages (openssl req -x509)", true, 0, true},
		{"CA whose key usages leave out certSign", true, x509.KeyUsageDigitalSignature, false},
		{"not a CA", false, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "member CA"},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
				IsCA: tc.isCA, BasicConstraintsValid: true, KeyUsage: tc.usage}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			if err != nil {
				t.Fatal(err)
			}
			_, err = provision.ParseIssuer(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM)
			if (err == nil) != tc.ok {
				t.Errorf("ParseIssuer: %v, want ok %v", err, tc.ok)
			}
		})
	}
}
