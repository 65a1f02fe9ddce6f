package trust_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/trust"
)

// A folder of anchors loads only when every file is a member's CA
// certificates: a typo, a leaf, a key or a block that does not parse
// stops the start (the operator's configuration is never half-read).
func TestLoad(t *testing.T) {
	east, west := cptest.NewCA(t), cptest.NewCA(t)
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	leaf := east.Client(t)
	tests := map[string]struct {
		files  map[string]string
		errHas string
	}{
		"two members":             {files: map[string]string{"east.pem": read(east.File), "west.crt": read(west.File), "..data": "ignored"}},
		"not a cluster ID":        {files: map[string]string{"East_1.pem": read(east.File)}, errHas: "not a cluster ID"},
		"another extension":       {files: map[string]string{"east.txt": read(east.File)}, errHas: "want <cluster ID>.pem"},
		"a leaf":                  {files: map[string]string{"east.pem": read(leaf.CertFile)}, errHas: "is not a CA"},
		"a key":                   {files: map[string]string{"east.pem": read(leaf.KeyFile)}, errHas: "not a CERTIFICATE"},
		"a block that is garbage": {files: map[string]string{"east.pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, errHas: "certificate 1"},
		"empty":                   {files: map[string]string{}, errHas: "holds no"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for f, body := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			a, err := trust.Load(dir)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(a.Members(), ","); got != "east,west" {
				t.Errorf("members %s", got)
			}
		})
	}
}

// A member's anchor vouches for certificates it issued, and no other
// member's anchor does.
func TestVerifyLeaf(t *testing.T) {
	east, west := cptest.NewCA(t), cptest.NewCA(t)
	dir := t.TempDir()
	for m, ca := range map[string]*cptest.CA{"east": east, "west": west} {
		b, _ := os.ReadFile(ca.File)
		if err := os.WriteFile(filepath.Join(dir, m+".pem"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := trust.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := east.Gateway(t, "spiffe://eastwest.io/clusterset/demo/cluster/east/role/gateway").PEM(t)
	if err := a.VerifyLeaf("east", []byte(chain)); err != nil {
		t.Errorf("east's own certificate: %v", err)
	}
	if err := a.VerifyLeaf("west", []byte(chain)); err == nil {
		t.Error("west's anchor vouches for a certificate east's issued")
	}
	if err := a.VerifyLeaf("north", []byte(chain)); err == nil {
		t.Error("a member without an anchor vouches for a certificate")
	}
}
