package cptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority made for one test: real certificates
// for mutual TLS between the control plane and its clients.
type CA struct {
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
	// File is the CA certificate (PEM), for --xds-tls-client-ca and for
	// clients verifying the server.
	File string
	Pool *x509.CertPool
}

// Leaf is a certificate issued by a CA, and its files.
type Leaf struct {
	CertFile, KeyFile string
	TLS               tls.Certificate
	// Serial is the certificate's serial number.
	Serial *big.Int
}

// PEM returns the certificate and key files' contents.
func (l Leaf) PEM(t testing.TB) (cert, key string) {
	t.Helper()
	c, err := os.ReadFile(l.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(l.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(c), string(k)
}

// NewCA makes a CA in a temporary folder of the test.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "eastwest test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{dir: t.TempDir(), cert: cert, key: key, Pool: x509.NewCertPool()}
	ca.serial.Store(1)
	ca.Pool.AddCert(cert)
	ca.File = filepath.Join(ca.dir, "ca.crt")
	writePEM(t, ca.File, "CERTIFICATE", der)
	return ca
}

// KeyPEM is the CA's private key (PEM): for code that signs with the CA
// itself (a member's issuer of Gateway identities).
func (ca *CA) KeyPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// Server issues a serving certificate for 127.0.0.1 and localhost.
func (ca *CA) Server(t testing.TB) Leaf {
	t.Helper()
	return ca.issue(t, "server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil,
		[]net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
}

// ServerAt issues a serving certificate for 127.0.0.1, localhost and the
// IP addresses given (a control plane on a network namespace's veth).
func (ca *CA) ServerAt(t testing.TB, ips ...string) Leaf {
	t.Helper()
	all := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, ip := range ips {
		all = append(all, net.ParseIP(ip))
	}
	return ca.issue(t, "server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil, all, []string{"localhost"})
}

// ServerFor issues a serving certificate for the DNS names given (an
// HTTPS listener's certificate).
func (ca *CA) ServerFor(t testing.TB, dns ...string) Leaf {
	t.Helper()
	return ca.issue(t, "server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil, nil, dns)
}

// Client issues a client certificate carrying the URI SANs given (the
// xDS identities).
func (ca *CA) Client(t testing.TB, uris ...string) Leaf {
	t.Helper()
	return ca.issue(t, "client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, parseURIs(t, uris), nil, nil)
}

// Gateway issues an east-west gateway's certificate carrying the URI SANs
// given (its identity): for both ends of a tunnel, and its xDS client.
func (ca *CA) Gateway(t testing.TB, uris ...string) Leaf {
	t.Helper()
	return ca.issue(t, "gateway", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, parseURIs(t, uris), nil, nil)
}

func parseURIs(t testing.TB, uris []string) []*url.URL {
	t.Helper()
	var us []*url.URL
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		us = append(us, u)
	}
	return us
}

// Kubernetes issues a certificate as Kubernetes components present
// them: the subject names the user (CN) and its groups (O), for client
// and server use, with the IP addresses and DNS names given.
func (ca *CA) Kubernetes(t testing.TB, user string, groups []string, ips []string, dns []string) Leaf {
	t.Helper()
	var all []net.IP
	for _, ip := range ips {
		all = append(all, net.ParseIP(ip))
	}
	return ca.issueSubject(t, pkix.Name{CommonName: user, Organization: groups},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, nil, all, dns)
}

func (ca *CA) issue(t testing.TB, kind string, usage []x509.ExtKeyUsage, uris []*url.URL, ips []net.IP, dns []string) Leaf {
	t.Helper()
	return ca.issueSubject(t, pkix.Name{CommonName: kind}, usage, uris, ips, dns)
}

func (ca *CA) issueSubject(t testing.TB, subject pkix.Name, usage []x509.ExtKeyUsage, uris []*url.URL, ips []net.IP, dns []string) Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := ca.serial.Add(1)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(n), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
		URIs: uris, IPAddresses: ips, DNSNames: dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(ca.dir, "leaf-"+big.NewInt(n).String())
	l := Leaf{CertFile: base + ".crt", KeyFile: base + ".key", Serial: big.NewInt(n)}
	writePEM(t, l.CertFile, "CERTIFICATE", der)
	writePEM(t, l.KeyFile, "EC PRIVATE KEY", kb)
	if l.TLS, err = tls.LoadX509KeyPair(l.CertFile, l.KeyFile); err != nil {
		t.Fatal(err)
	}
	return l
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
