package provision

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// Issuer is a member's CA, which signs its Gateways' Envoys' xDS client
// certificates (IdentityParameters.IssuerSecret).
type Issuer struct {
	Cert *x509.Certificate
	Key  any
	// CertPEM is the CA's certificate as read (the identity Secrets'
	// ca.crt).
	CertPEM []byte
}

// ParseIssuer reads a CA's certificate and key (PEM). The certificate
// must be a CA's.
func ParseIssuer(certPEM, keyPEM []byte) (*Issuer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("tls.crt: no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tls.crt: %w", err)
	}
	// A CA without a key usage extension may sign (RFC 5280; openssl req
	// -x509 makes such CAs); one with it must list certSign.
	if !cert.IsCA || (cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0) {
		return nil, errors.New("tls.crt: not a CA certificate (basic constraints CA, and key usage certSign when it has key usages)")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("tls.key: no PEM key")
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("tls.key: %w", err)
	}
	return &Issuer{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// Issue signs a client certificate for identity (a URI SAN), valid for
// duration from now (and a minute before, for clocks that differ), with
// a new P-256 key. It returns the certificate and key as PEM.
func (is *Issuer) Issue(identity string, duration time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	uri, err := url.Parse(identity)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(duration)
	if notAfter.After(is.Cert.NotAfter) {
		notAfter = is.Cert.NotAfter // never past the CA's own
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "eastwest gateway-api envoy"},
		URIs:         []*url.URL{uri},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.Cert, &key.PublicKey, is.Key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// Renew says why a Secret's certificate must be issued again, or "" when
// it is still good: it names identity, this issuer signed it, and more
// than a third of duration is left.
func (is *Issuer) Renew(certPEM, caPEM []byte, identity string, duration time.Duration, now time.Time) string {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return "no certificate"
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "the certificate does not parse"
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != identity {
		return "the certificate names another identity"
	}
	if err := cert.CheckSignatureFrom(is.Cert); err != nil {
		return "another CA signed it"
	}
	if string(caPEM) != string(is.CertPEM) {
		return "its ca.crt is not the issuer's"
	}
	if left := cert.NotAfter.Sub(now); left < duration/3 && left < is.Cert.NotAfter.Sub(now) {
		return fmt.Sprintf("%v left", left.Round(time.Minute))
	}
	return ""
}
