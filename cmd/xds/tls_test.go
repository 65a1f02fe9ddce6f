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

// With --debug-tls-client-ca the debug endpoint takes only clients with a
// certificate of that CA: `xds probe` and `xds status` present one with
// --debug-cert/--debug-key (as the chart's probes do), and without one
// they are refused.
func TestDebugEndpointMutualTLS(t *testing.T) {
	ca := cptest.NewCA(t)
	srv := ca.Server(t)
	cfg := controlplane.Config{Dir: "../../examples/clusterset"}
	cfg.DebugTLS.Cert, cfg.DebugTLS.Key, cfg.DebugTLS.ClientCA = srv.CertFile, srv.KeyFile, ca.File
	app := cptest.StartWith(t, cfg)
	client := ca.Client(t)
	other := cptest.NewCA(t).Client(t)

	tests := []struct {
		name string
		args []string
		code int
	}{
		{"probe ready with a client certificate", []string{"probe", "ready", "--debug-cert", client.CertFile, "--debug-key", client.KeyFile}, 0},
		{"probe healthy with a client certificate", []string{"probe", "healthy", "--debug-cert", client.CertFile, "--debug-key", client.KeyFile}, 0},
		{"status with a client certificate", []string{"status", "--debug-cert", client.CertFile, "--debug-key", client.KeyFile}, 0},
		{"probe without a client certificate", []string{"probe", "ready"}, 1},
		{"probe with another CA's certificate", []string{"probe", "ready", "--debug-cert", other.CertFile, "--debug-key", other.KeyFile}, 1},
		{"the name the endpoint's certificate carries", []string{"probe", "ready", "--debug-cert", client.CertFile, "--debug-key", client.KeyFile, "--debug-server-name", "localhost"}, 0},
		{"a name it does not carry", []string{"probe", "ready", "--debug-cert", client.CertFile, "--debug-key", client.KeyFile, "--debug-server-name", "eastwest.example"}, 1},
		{"a certificate without its key", []string{"probe", "ready", "--debug-cert", client.CertFile}, 2},
		{"probe of something else", []string{"probe", "alive"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(tt.args, "--debug-address", app.DebugAddr(), "--debug-ca", ca.File)
			if code := run(args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit %d, want %d: %s%s", code, tt.code, stdout.String(), stderr.String())
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"probe", "ready", "--debug-address", app.DebugAddr(), "--debug-cert", client.CertFile, "--debug-key", client.KeyFile}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "need --debug-ca") {
		t.Errorf("a client certificate without --debug-ca: exit %d %s", code, stderr.String())
	}
}
