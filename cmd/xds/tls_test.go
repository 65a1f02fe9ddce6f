package main

import (
	"bytes"
	"context"
	"crypto/tls"
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

// With --xds-tls-* and --debug-tls-*, both listeners speak only TLS: an
// xDS client verifying the certificate is served, a plaintext one is not,
// and `xds status --debug-ca` reads the debug endpoint over HTTPS.
func TestTLSListeners(t *testing.T) {
	ca := cptest.NewCA(t)
	srv := ca.Server(t)
	cfg := controlplane.Config{Dir: "../../examples/clusterset"}
	cfg.XDSTLS.Cert, cfg.XDSTLS.Key = srv.CertFile, srv.KeyFile
	cfg.DebugTLS.Cert, cfg.DebugTLS.Key = srv.CertFile, srv.KeyFile
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
	if err := ask(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12})); err != nil {
		t.Errorf("TLS client not served: %v", err)
	}
	if err := ask(insecure.NewCredentials()); err == nil {
		t.Error("a plaintext client was served by a TLS listener")
	}

	var stdout, stderr bytes.Buffer
	if code := run([]string{"status", "--debug-address", app.DebugAddr(), "--debug-ca", ca.File, "--json"}, &stdout, &stderr); code != 0 {
		t.Errorf("status over HTTPS: %d %s", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"status", "--debug-address", app.DebugAddr()}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "error") {
		t.Errorf("plain HTTP to the TLS debug endpoint succeeded: %s", stdout.String())
	}
}
