package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "eastwest-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// With --xds-tls-* and --debug-tls-*, both listeners speak only TLS: an
// xDS client verifying the certificate is served, a plaintext one is not,
// and `xds status --debug-ca` reads the debug endpoint over HTTPS.
func TestTLSListeners(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	cfg := controlplane.Config{Dir: "../../examples/clusterset"}
	cfg.XDSTLS.Cert, cfg.XDSTLS.Key = certFile, keyFile
	cfg.DebugTLS.Cert, cfg.DebugTLS.Key = certFile, keyFile
	app := cptest.StartWith(t, cfg)

	ask := func(creds credentials.TransportCredentials) error {
		conn, err := grpc.NewClient(app.XDSAddr(), grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "tls", Cluster: "east"}, TypeUrl: resourcev3.ClusterType}); err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	if err := ask(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})); err != nil {
		t.Errorf("TLS client not served: %v", err)
	}
	if err := ask(insecure.NewCredentials()); err == nil {
		t.Error("a plaintext client was served by a TLS listener")
	}

	caFile := filepath.Join(dir, "ca.crt")
	ca, _ := os.ReadFile(certFile)
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"status", "--debug-address", app.DebugAddr(), "--debug-ca", caFile, "--json"}, &stdout, &stderr); code != 0 {
		t.Errorf("status over HTTPS: %d %s", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"status", "--debug-address", app.DebugAddr()}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "error") {
		t.Errorf("plain HTTP to the TLS debug endpoint succeeded: %s", stdout.String())
	}
}
