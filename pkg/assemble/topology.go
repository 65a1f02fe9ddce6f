package assemble

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// tunnelCert is a member's tunnel Secret as last read: its bytes, and
// the certificate made of them (the last good one when they are not).
type tunnelCert struct {
	chain, key, ca []byte
	good           *translate.Certificate
	// goodCA are the good ca.crt's certificates, each alone (PEM): parsed
	// once per Secret change, not on every flush.
	goodCA  [][]byte
	problem string
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
	t := &translate.Topology{Members: map[mcs.ClusterID]translate.NetworkMember{}, TrustDomain: a.opts.TrustDomain, ClusterSet: a.opts.Store.ClusterSet}
	used := false
	var bundle [][]byte
	seen := map[string]bool{}
	for _, c := range state.Clusters {
		if c.ID == "" {
			continue
		}
		m := translate.NetworkMember{Network: c.Network, Gateways: c.Gateways, Local: c.LocalGateway}
		if c.Network != "" {
			used = true
		}
		if tc := a.tunnelCert(c); tc != nil && tc.good != nil {
			m.Certificate = tc.good
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
	return t
}

// tunnelCert reads a member's tunnel Secret, parsing it only when its
// bytes changed.
func (a *Assembler) tunnelCert(c mcs.ClusterInfo) *tunnelCert {
	var secret *corev1.Secret
	if ns, name, ok := strings.Cut(c.TunnelSecret, "/"); ok {
		if in := a.gw.Inputs(c.Member); in != nil {
			secret = in.Secrets[types.NamespacedName{Namespace: ns, Name: name}]
		}
	}
	prev := a.certs[c.Member]
	if secret == nil {
		delete(a.certs, c.Member)
		return nil
	}
	chain, key, ca := secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey], secret.Data["ca.crt"]
	if prev != nil && bytes.Equal(prev.chain, chain) && bytes.Equal(prev.key, key) && bytes.Equal(prev.ca, ca) {
		return prev
	}
	tc := &tunnelCert{chain: chain, key: key, ca: ca}
	if prev != nil {
		tc.good, tc.goodCA = prev.good, prev.goodCA
	}
	_, err := tls.X509KeyPair(chain, key)
	blocks := splitPEM(ca)
	switch {
	case err != nil:
		tc.problem = fmt.Sprintf("tunnel Secret %s: %v", c.TunnelSecret, err)
	case len(blocks) == 0:
		tc.problem = fmt.Sprintf("tunnel Secret %s: ca.crt holds no PEM certificate (the ClusterSet's trust bundle)", c.TunnelSecret)
	default:
		tc.good, tc.goodCA = &translate.Certificate{Chain: chain, Key: key}, blocks
	}
	if tc.problem != "" && tc.good != nil {
		tc.problem += "; the previous certificate stays in use"
	}
	a.certs[c.Member] = tc
	return tc
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

// splitPEM returns the PEM certificates in b, each encoded again alone.
func splitPEM(b []byte) [][]byte {
	var out [][]byte
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		if block.Type == "CERTIFICATE" {
			out = append(out, pem.EncodeToMemory(block))
		}
	}
}
