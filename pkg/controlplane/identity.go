package controlplane

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/identity"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/pkg/trust"
)

// The xDS identity: who a client is, proved by its certificate.
//
// With --xds-tls-client-ca every client presents a certificate from that
// CA, and the node it claims must be one its certificate names in a URI
// SAN of this form (SPIFFE-style, as Istio and SPIRE name workloads):
//
//	spiffe://<trust domain>/clusterset/<clusterset>/cluster/<cluster ID>/role/<role>
//	spiffe://<trust domain>/clusterset/<clusterset>/cluster/<cluster ID>/role/gateway-api/gateway/<namespace>/<name>
//
// The trust domain is --xds-trust-domain (default eastwest.io); the
// ClusterSet is --clusterset (when it is empty, any ClusterSet name is
// accepted: the server serves one set); the cluster, role and Gateway are
// exactly those of the node contract (node.cluster, node.metadata.role,
// node.metadata.gateway). A certificate may carry several such SANs (one
// Envoy serving two roles, say); any one naming the claimed node is
// enough. A mismatch ends the stream with PermissionDenied, and the
// reason is in the log, `xds status` and eastwest_xds_refused_total.
//
// Without client certificates there is no identity: any client that can
// reach the xDS port is trusted with the node it claims. Secrets (the
// private keys of Gateways' HTTPS listeners) are then served only to
// clients on loopback; anywhere else they need mutual TLS.

// DefaultTrustDomain is the trust domain of xDS client identities (and
// of the east-west gateways' tunnel identities, the same URIs).
const DefaultTrustDomain = translate.DefaultTrustDomain

// IdentityPolicy is how xDS clients are authorized.
type IdentityPolicy struct {
	// Required: clients present verified certificates (mutual TLS) and
	// may claim only the nodes their certificates name.
	Required bool
	// TrustDomain is the host of the identity URIs.
	TrustDomain string
	// ClusterSet, when set, is the ClusterSet the identities must name.
	ClusterSet string
	// Anchors, when set, returns the operator's current trust anchors:
	// the identity that names the claimed view must chain to the anchor
	// of the member it names, so that one member's issuer cannot vouch
	// for another member's identities.
	Anchors func() *trust.Anchors
}

// IdentityURI is the identity a certificate carries for a view: the URI
// SAN to put in the certificate of the client that serves it.
func (p IdentityPolicy) IdentityURI(clusterSet string, v translate.View) string {
	id := identity.ID{TrustDomain: p.TrustDomain, ClusterSet: clusterSet, Cluster: string(v.Cluster), Role: string(v.Role)}
	if v.Role == translate.RoleGatewayAPI {
		id.Gateway = v.Gateway
	}
	return id.String()
}

// Authenticate is the Tracker's Authenticator: the peer of a stream and
// the Authorizer of what it may claim and read.
func (p IdentityPolicy) Authenticate(ctx context.Context) (cache.Peer, cache.Authorizer) {
	var pr cache.Peer
	var chains [][]*x509.Certificate
	verified := false
	loopback := false
	if pe, ok := peer.FromContext(ctx); ok {
		pr.Address = pe.Addr.String()
		loopback = isLoopback(pe.Addr)
		if info, ok := pe.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 && len(info.State.PeerCertificates) > 0 {
			verified = true
			chains = info.State.VerifiedChains
			pr.Identities = identity.CertificateURIs(info.State.PeerCertificates[0])
		}
	}
	return pr, func(n *corev3.Node, typ string) error {
		if p.Required {
			if !verified {
				return cache.Refuse(cache.ReasonIdentity, codes.Unauthenticated, "a verified client certificate is required")
			}
			if err := p.authorize(pr.Identities, chains, n); err != nil {
				return err
			}
		}
		if typ == resourcev3.SecretType && !verified && !loopback {
			return cache.Refuse(cache.ReasonSecrets, codes.PermissionDenied,
				"secrets are served only to clients proving their identity with a certificate (serve with --xds-tls-client-ca) or on loopback; %s is neither", pr.Address)
		}
		return nil
	}
}

// authorize checks that one of the identities names the node's view
// and, with trust anchors, that the anchor of the member it names issued
// the certificate (chains are its verified chains).
func (p IdentityPolicy) authorize(ids []string, chains [][]*x509.Certificate, n *corev3.Node) error {
	v, err := ParseNode(n)
	if err != nil {
		return cache.Refuse(cache.ReasonIdentity, codes.PermissionDenied, "%v", err)
	}
	for _, id := range ids {
		if !p.names(id, v) {
			continue
		}
		if p.Anchors != nil && !p.Anchors().Issued(string(v.Cluster), chains) {
			return cache.Refuse(cache.ReasonIdentity, codes.PermissionDenied,
				"node %q claims %s, but its certificate was not issued by member %s's trust anchor (--trust-anchors): one member's issuer cannot vouch for another's identities", n.GetId(), v, v.Cluster)
		}
		return nil
	}
	want := p.IdentityURI(p.ClusterSet, v)
	if p.ClusterSet == "" {
		want = strings.Replace(want, "/clusterset//", "/clusterset/<any>/", 1)
	}
	return cache.Refuse(cache.ReasonIdentity, codes.PermissionDenied,
		"node %q claims %s, which its certificate does not name (it names %v; want %s)", n.GetId(), v, ids, want)
}

// names reports whether the identity URI id names view v. The URI is
// parsed by the SPIFFE ID rules (package identity): a query, fragment,
// user info, port, percent-encoding or a scheme or trust domain not in
// lower case make it no identity at all.
func (p IdentityPolicy) names(uri string, v translate.View) bool {
	id, err := identity.Parse(uri)
	if err != nil {
		return false
	}
	td := p.TrustDomain
	if td == "" {
		td = DefaultTrustDomain
	}
	return id.TrustDomain == td && (p.ClusterSet == "" || id.ClusterSet == p.ClusterSet) &&
		id.Cluster == string(v.Cluster) && id.Role == string(v.Role) && id.Gateway == v.Gateway
}

func isLoopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DebugAccess guards the debug endpoint when it requires client
// certificates (--debug-tls-client-ca): a verified certificate alone no
// longer reads everything, since the ClusterSet's CA also issues every
// gateway's and client's certificate. Its identity decides:
//
//	/healthz, /readyz   any verified certificate (the pod's own probes)
//	/metrics            spiffe://<trust domain>/clusterset/<set>/role/metrics, or the operator
//	everything else     spiffe://<trust domain>/clusterset/<set>/role/operator
//
// (/debug/* shows every client's identity and address and every view's
// configuration; /debug/pprof profiles the process.) Without client
// certificates the endpoint is for loopback (its default address) and
// guards nothing itself.
func (p IdentityPolicy) DebugAccess(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "a verified client certificate is required", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/healthz", "/readyz":
			next.ServeHTTP(w, r)
			return
		}
		need := []string{identity.RoleOperator}
		if r.URL.Path == "/metrics" {
			need = append(need, identity.RoleMetrics)
		}
		td := p.TrustDomain
		if td == "" {
			td = DefaultTrustDomain
		}
		uris := identity.CertificateURIs(r.TLS.PeerCertificates[0])
		for _, u := range uris {
			id, err := identity.Parse(u)
			if err == nil && id.Cluster == "" && id.TrustDomain == td && (p.ClusterSet == "" || id.ClusterSet == p.ClusterSet) && slices.Contains(need, id.Role) {
				next.ServeHTTP(w, r)
				return
			}
		}
		want := identity.ID{TrustDomain: td, ClusterSet: cmp.Or(p.ClusterSet, "<clusterset>"), Role: identity.RoleOperator}.String()
		if r.URL.Path == "/metrics" {
			want += " or .../role/" + identity.RoleMetrics
		}
		http.Error(w, fmt.Sprintf("%s needs a certificate naming %s (this one names %v); see docs/security.md", r.URL.Path, want, uris), http.StatusForbidden)
	})
}
