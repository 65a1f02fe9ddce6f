package trust

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Anchors are the operator's trust anchors by member cluster ID. The zero
// value and nil have none. An Anchors is immutable once loaded.
type Anchors struct {
	byMember map[string][]*x509.Certificate
	pem      map[string][]byte
}

// Load reads a folder of PEM files, one per member: <cluster ID>.pem
// (or .crt), each holding the CA certificates of that member's issuer(s).
// A ConfigMap mounted as a folder is one (its keys are the file names;
// the dotfiles of the mount are skipped). Every certificate is parsed; a
// file with a block that does not parse, no certificate, or a name that
// is not a cluster ID is an error: anchors are the operator's, and a
// typo must not silently leave a member out.
func Load(dir string) (*Anchors, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	a := &Anchors{byMember: map[string][]*x509.Certificate{}, pem: map[string][]byte{}}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		ext := filepath.Ext(name)
		member := strings.TrimSuffix(name, ext)
		if ext != ".pem" && ext != ".crt" {
			errs = append(errs, fmt.Errorf("trust anchors: %s: want <cluster ID>.pem", name))
			continue
		}
		if bad := validation.IsDNS1123Label(member); len(bad) > 0 {
			errs = append(errs, fmt.Errorf("trust anchors: %s: %q is not a cluster ID: %s", name, member, bad[0]))
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name)) //nolint:gosec // the operator's folder
		if err != nil {
			errs = append(errs, fmt.Errorf("trust anchors: %w", err))
			continue
		}
		certs, err := Parse(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust anchors: %s: %w", name, err))
			continue
		}
		if _, dup := a.byMember[member]; dup {
			errs = append(errs, fmt.Errorf("trust anchors: member %s has two files", member))
			continue
		}
		a.byMember[member] = certs
		var buf bytes.Buffer
		for _, c := range certs {
			_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		a.pem[member] = buf.Bytes()
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(a.byMember) == 0 {
		return nil, fmt.Errorf("trust anchors: %s holds no <cluster ID>.pem", dir)
	}
	return a, nil
}

// Parse reads PEM CA certificates: every CERTIFICATE block must parse and
// be a CA; other blocks are an error too (a key in an anchors file is a
// mistake worth stopping for).
func Parse(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("block %d is a %s, not a CERTIFICATE", n, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %d (%s) is not a CA", n, c.Subject)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// Members are the members with anchors, sorted.
func (a *Anchors) Members() []string {
	if a == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(a.byMember))
}

// PEM is member's anchors as PEM (nil without).
func (a *Anchors) PEM(member string) []byte {
	if a == nil {
		return nil
	}
	return a.pem[member]
}

// Certificates are member's anchors.
func (a *Anchors) Certificates(member string) []*x509.Certificate {
	if a == nil {
		return nil
	}
	return slices.Clone(a.byMember[member])
}

// Pool is every member's anchors: what a TLS server verifies client
// chains against before the identity's member is checked (Issued).
func (a *Anchors) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	if a == nil {
		return p
	}
	for _, m := range a.Members() {
		for _, c := range a.byMember[m] {
			p.AddCert(c)
		}
	}
	return p
}

// Bundle is every member's anchors as PEM, by member: the tunnels' trust
// bundle.
func (a *Anchors) Bundle() []byte {
	if a == nil {
		return nil
	}
	var out []byte
	for _, m := range a.Members() {
		out = append(out, a.pem[m]...)
	}
	return out
}

// Issued reports whether one of the verified chains ends at an anchor of
// member: whether that member's issuer vouches for the certificate.
func (a *Anchors) Issued(member string, chains [][]*x509.Certificate) bool {
	if a == nil {
		return false
	}
	for _, chain := range chains {
		if len(chain) == 0 {
			continue
		}
		root := chain[len(chain)-1]
		if slices.ContainsFunc(a.byMember[member], func(c *x509.Certificate) bool { return c.Equal(root) }) {
			return true
		}
	}
	return false
}

// VerifyLeaf verifies a certificate chain (PEM, leaf first) against the
// anchors of member alone, for any key usage: whether member's issuer
// issued it. It checks the chain as of the leaf's NotBefore (who issued
// it, not whether it is still valid: Envoy checks expiry on every
// handshake, and a pure caller has no clock).
func (a *Anchors) VerifyLeaf(member string, chainPEM []byte) error {
	if a == nil || len(a.byMember[member]) == 0 {
		return fmt.Errorf("no trust anchor for member %s", member)
	}
	var certs []*x509.Certificate
	for rest := chainPEM; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return errors.New("no certificate")
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range a.byMember[member] {
		roots.AddCert(c)
	}
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: certs[0].NotBefore})
	if err != nil {
		return fmt.Errorf("not issued by member %s's trust anchor: %w", member, err)
	}
	return nil
}
