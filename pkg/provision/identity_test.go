package provision_test

import (
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
