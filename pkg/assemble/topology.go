package assemble

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/eastwest-dev/eastwest/pkg/identity"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// tunnelCert is a member's tunnel Secret as last read: its bytes, and
// the certificate made of them (the last good one when they are not).
type tunnelCert struct {
	chain, key, ca []byte
	// id is the member's cluster ID it was checked for (the anchors
	// vouch for one member's identities).
	id   mcs.ClusterID
	good *translate.Certificate
	// goodCA are the good ca.crt's certificates, each alone (PEM): parsed
	// once per Secret change, not on every flush.
	goodCA  [][]byte
	problem string
	// next is a new good certificate announced to the peers (pins) but
	// presented only from nextAt on (Options.RotationDelay): until then
	// the peers may not accept it yet. pins are the SHA-256 hashes of the
	// leaf certificates the member's gateways may present, the one in use
	// and the one before or after it: the peers accept those alone, so a
	// certificate for this member's gateway identity that this member's
	// tunnel Secret never held (minted by another member's issuer, say)
	// opens no tunnel.
	next   *translate.Certificate
	nextAt time.Time
	pins   []string
}

// rotate makes c the member's certificate: at once when it has none (or
// when it is the same leaf); else announced first (pins) and presented
// after the rotation delay. The previous certificate stays pinned until
// the next rotation: a gateway that has not taken the new one yet still
// opens tunnels.
func (a *Assembler) rotate(tc *tunnelCert, c *translate.Certificate) {
	h := leafHash(c.Chain)
	switch {
	case tc.good == nil:
		tc.good, tc.next, tc.pins = c, nil, []string{h}
	case leafHash(tc.good.Chain) == h:
		tc.good, tc.next = c, nil
	default:
		tc.pins = []string{leafHash(tc.good.Chain), h}
		slices.Sort(tc.pins)
		if a.opts.RotationDelay < 0 {
			tc.good, tc.next = c, nil
			return
		}
		tc.next, tc.nextAt = c, a.opts.Now().Add(a.opts.RotationDelay)
	}
}

// promote presents the announced certificates whose delay is over.
func (a *Assembler) promote() {
	now := a.opts.Now()
	for _, tc := range a.certs {
		if tc.next != nil && !now.Before(tc.nextAt) {
			tc.good, tc.next = tc.next, nil
		}
	}
}

// Due is when a flush next has something to do though no event came (an
// announced tunnel certificate to present); zero when nothing is due.
func (a *Assembler) Due() time.Time {
	var due time.Time
	for _, tc := range a.certs {
		if tc.next != nil && (due.IsZero() || tc.nextAt.Before(due)) {
			due = tc.nextAt
		}
	}
	return due
}

// leafHash is the hex SHA-256 of a chain's first certificate (DER), as
// Envoy's verify_certificate_hash takes it.
func leafHash(chain []byte) string {
	for _, b := range pemBlocks(chain) {
		if b.Type == "CERTIFICATE" {
			sum := sha256.Sum256(b.Bytes)
			return hex.EncodeToString(sum[:])
		}
	}
	return ""
}

// topology is how the members reach each other: their networks and
// gateway addresses (the merged state) and their gateways' tunnel
// certificates (each member's tunnel Secret, which the Gateway API store
// keeps with the member's other TLS Secrets). Nil while no member declares
// a network or holds a tunnel certificate: a flat ClusterSet, configured
// as before networks existed.
//
// A tunnel Secret that is not a valid certificate and key keeps the
// member's last good certificate in use, and is reported.
func (a *Assembler) topology(state *mcs.State) *translate.Topology {
	a.promote()
	t := &translate.Topology{Members: map[mcs.ClusterID]translate.NetworkMember{}, TrustDomain: a.opts.TrustDomain, ClusterSet: a.opts.Store.ClusterSet}
	used := false
	var bundle [][]byte
	seen := map[string]bool{}
	for _, c := range state.Clusters {
		if c.ID == "" {
			continue
		}
		m := translate.NetworkMember{Network: c.Network, Gateways: c.Gateways, Local: c.LocalGateway, TrustAnchor: a.opts.Anchors.PEM(string(c.ID)),
			Problem: c.GatewayError, CertificateProblem: c.TunnelError}
		if c.TunnelSecret == "" {
			m.CertificateProblem = "it has no east-west gateway Service (labelled " + mcs.LabelGateway + " in the gateway namespace), whose tunnel Secret holds it"
		}
		if c.Network != "" {
			used = true
		}
		if tc := a.tunnelCert(c.Member, c.ID, c.TunnelSecret); tc != nil && tc.good != nil {
			m.Certificate, m.Pins = tc.good, tc.pins
			used = true
			for _, block := range tc.goodCA {
				if !seen[string(block)] {
					seen[string(block)] = true
					bundle = append(bundle, block)
				}
			}
		}
		t.Members[c.ID] = m
	}
	for member := range a.certs {
		if !slices.ContainsFunc(state.Clusters, func(c mcs.ClusterInfo) bool { return c.Member == member }) {
			delete(a.certs, member) // the member left
		}
	}
	if !used {
		return nil
	}
	t.TrustBundle = bytes.Join(bundle, nil)
	if a.opts.Anchors != nil {
		t.TrustBundle = a.opts.Anchors.Bundle()
	}
	return t
}

// syncTunnels tells the MCS store, before it merges, the state of every
// member's tunnel certificate: other networks reach a member only while
// its gateways hold a usable one, and a problem with it is shown in
// /debug/clusters (tunnelError, gatewayError), the Reachable condition of
// its exports and eastwest_member_gateway_addresses{reachable}.
func (a *Assembler) syncTunnels() {
	for member, secret := range a.store.TunnelSecrets() {
		st := mcs.TunnelStatus{Problem: fmt.Sprintf("tunnel Secret %s not found (a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt)", secret)}
		if tc := a.tunnelCert(member, a.store.MemberID(member), secret); tc != nil {
			st = mcs.TunnelStatus{Usable: tc.good != nil, Problem: tc.problem}
		}
		a.store.SetTunnel(member, st)
	}
}

// tunnelCert reads a member's tunnel Secret (namespace/name), parsing it
// only when its bytes changed. Every certificate is parsed before it is
// used: a chain or key that does not parse keeps the last good
// certificate; a CA block that does not parse is dropped (it would make
// every Envoy reject the whole trust bundle), and a ca.crt with no good
// block keeps the last good ones.
func (a *Assembler) tunnelCert(member string, id mcs.ClusterID, name string) *tunnelCert {
	var secret *corev1.Secret
	if ns, n, ok := strings.Cut(name, "/"); ok {
		if in := a.gwapi.store.Inputs(member); in != nil {
			secret = in.Secrets[types.NamespacedName{Namespace: ns, Name: n}]
		}
	}
	prev := a.certs[member]
	if secret == nil {
		delete(a.certs, member)
		return nil
	}
	chain, key, ca := secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey], secret.Data["ca.crt"]
	if prev != nil && prev.id == id && bytes.Equal(prev.chain, chain) && bytes.Equal(prev.key, key) && bytes.Equal(prev.ca, ca) {
		return prev
	}
	tc := &tunnelCert{chain: chain, key: key, ca: ca, id: id}
	if prev != nil {
		tc.good, tc.goodCA, tc.next, tc.nextAt, tc.pins = prev.good, prev.goodCA, prev.next, prev.nextAt, prev.pins
	}
	var problems []string
	chainErr := parseChain(chain, key)
	var blocks [][]byte
	if a.opts.Anchors == nil {
		var bad string
		if blocks, bad = parseCAs(ca); bad != "" {
			problems = append(problems, bad)
		}
	} else {
		// The operator's anchors are the bundle; the member's own
		// certificate must come from its own anchor, for its own
		// gateway identity.
		blocks = [][]byte{nil}
		if chainErr == nil {
			chainErr = a.anchored(id, chain)
		}
	}
	switch {
	case chainErr != nil:
		problems = append(problems, chainErr.Error())
	case len(blocks) == 0:
		problems = append(problems, "ca.crt holds no valid PEM certificate (the ClusterSet's trust bundle)")
	default:
		tc.goodCA = blocks
		a.rotate(tc, &translate.Certificate{Chain: chain, Key: key})
	}
	if len(problems) > 0 {
		tc.problem = fmt.Sprintf("tunnel Secret %s: %s", name, strings.Join(problems, "; "))
		if tc.good != nil && (chainErr != nil || len(blocks) == 0) {
			tc.problem += "; the previous certificate stays in use"
		}
	}
	a.certs[member] = tc
	return tc
}

// anchored checks, with trust anchors, that member id's anchor issued a
// tunnel certificate chain and that it names id's gateway identity.
func (a *Assembler) anchored(id mcs.ClusterID, chain []byte) error {
	if err := a.opts.Anchors.VerifyLeaf(string(id), chain); err != nil {
		return fmt.Errorf("tls.crt: %w", err)
	}
	block, _ := pem.Decode(chain)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	td := cmp.Or(a.opts.TrustDomain, identity.DefaultTrustDomain)
	for _, u := range identity.CertificateURIs(leaf) {
		if got, err := identity.Parse(u); err == nil && got.TrustDomain == td && got.Cluster == string(id) && got.Role == identity.RoleGateway &&
			(a.opts.Store.ClusterSet == "" || got.ClusterSet == a.opts.Store.ClusterSet) {
			return nil
		}
	}
	return fmt.Errorf("tls.crt: names no gateway identity of member %s (%s)", id, identity.ID{TrustDomain: td, ClusterSet: cmp.Or(a.opts.Store.ClusterSet, "<clusterset>"), Cluster: string(id), Role: identity.RoleGateway})
}

// parseChain checks a certificate chain and its key: every CERTIFICATE
// block parses, and the key matches the first.
func parseChain(chain, key []byte) error {
	if _, err := tls.X509KeyPair(chain, key); err != nil {
		return fmt.Errorf("tls.crt and tls.key: %w", err)
	}
	for i, b := range pemBlocks(chain) {
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("tls.crt: certificate %d: %w", i+1, err)
		}
	}
	return nil
}

// parseCAs returns the CERTIFICATE blocks of a ca.crt that parse, each
// encoded again alone, and says which did not.
func parseCAs(ca []byte) (good [][]byte, problem string) {
	var bad []string
	n := 0
	for _, b := range pemBlocks(ca) {
		if b.Type != "CERTIFICATE" {
			continue
		}
		n++
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			bad = append(bad, fmt.Sprintf("certificate %d: %v", n, err))
			continue
		}
		good = append(good, pem.EncodeToMemory(b))
	}
	if len(bad) > 0 {
		problem = "ca.crt: dropped what does not parse (" + strings.Join(bad, "; ") + ")"
	}
	return good, problem
}

// tunnelInvalid reports, per gateway view, a tunnel Secret that could not
// be used.
func (a *Assembler) tunnelInvalid(state *mcs.State) map[string][]translate.Invalid {
	out := map[string][]translate.Invalid{}
	for _, c := range state.Clusters {
		if tc := a.certs[c.Member]; tc != nil && tc.problem != "" && c.ID != "" {
			v := translate.View{Cluster: c.ID, Role: translate.RoleGateway}
			out[v.String()] = []translate.Invalid{{Type: resourcev3.SecretType, Name: translate.TunnelCertificateSecret, Err: fmt.Errorf("%s", tc.problem)}}
		}
	}
	return out
}

// pemBlocks returns the PEM blocks of b.
func pemBlocks(b []byte) []*pem.Block {
	var out []*pem.Block
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		out = append(out, block)
	}
}
