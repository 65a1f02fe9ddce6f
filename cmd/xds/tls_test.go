package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
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
	"github.com/eastwest-dev/eastwest/internal/syncbuf"
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
	// Finding 9 of the trust-boundaries issue: with the production
	// values, an east client certificate (from the ClusterSet's CA, as
	// every gateway's and client's is) read west's gateway config_dump,
	// every client's identity and CPU profiles. Now the debug endpoint
	// reads the certificate's identity: the operator reads everything,
	// Prometheus /metrics alone, anyone else the probes.
	operator := ca.Client(t, "spiffe://eastwest.io/clusterset/demo/role/operator")
	prometheus := ca.Client(t, "spiffe://eastwest.io/clusterset/demo/role/metrics")
	eastClient := ca.Client(t, "spiffe://eastwest.io/clusterset/demo/cluster/east/role/client")
	forged := ca.Client(t, "spiffe://eastwest.io/clusterset/demo/role/operator?x")

	tests := []struct {
		name string
		args []string
		code int
	}{
		{"probe ready with a client certificate", []string{"probe", "ready", "--debug-cert", client.CertFile, "--debug-key", client.KeyFile}, 0},
		{"probe healthy with a client certificate", []string{"probe", "healthy", "--debug-cert", client.CertFile, "--debug-key", client.KeyFile}, 0},
		{"status as the operator", []string{"status", "--debug-cert", operator.CertFile, "--debug-key", operator.KeyFile}, 0},
		{"status with a certificate of no identity", []string{"status", "--debug-cert", client.CertFile, "--debug-key", client.KeyFile}, 1},
		{"status as an xDS client of east", []string{"status", "--debug-cert", eastClient.CertFile, "--debug-key", eastClient.KeyFile}, 1},
		{"status as Prometheus", []string{"status", "--debug-cert", prometheus.CertFile, "--debug-key", prometheus.KeyFile}, 1},
		{"status as a forged operator", []string{"status", "--debug-cert", forged.CertFile, "--debug-key", forged.KeyFile}, 1},
		{"probe as an xDS client of east", []string{"probe", "ready", "--debug-cert", eastClient.CertFile, "--debug-key", eastClient.KeyFile}, 0},
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
	// /metrics and pprof, read with curl's equivalent.
	get := func(leaf cptest.Leaf, path string) int {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(leaf.CertFile, leaf.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}}
		resp, err := c.Get("https://" + app.DebugAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		who  string
		leaf cptest.Leaf
		path string
		code int
	}{
		{"Prometheus", prometheus, "/metrics", http.StatusOK},
		{"Prometheus", prometheus, "/debug/pprof/", http.StatusForbidden},
		{"Prometheus", prometheus, "/debug/syncz", http.StatusForbidden},
		{"an xDS client", eastClient, "/metrics", http.StatusForbidden},
		{"an xDS client", eastClient, "/debug/pprof/", http.StatusForbidden},
		{"the operator", operator, "/debug/pprof/", http.StatusOK},
		{"the operator", operator, "/metrics", http.StatusOK},
	} {
		if got := get(tc.leaf, tc.path); got != tc.code {
			t.Errorf("%s GET %s: %d, want %d", tc.who, tc.path, got, tc.code)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"probe", "ready", "--debug-address", app.DebugAddr(), "--debug-cert", client.CertFile, "--debug-key", client.KeyFile}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "need --debug-ca") {
		t.Errorf("a client certificate without --debug-ca: exit %d %s", code, stderr.String())
	}
}

// `xds watch` speaks mutual TLS to a control plane that requires it:
// with --xds-ca and the certificate of an east client it is served east's
// endpoints; without --xds-ca it cannot connect, and says so.
func TestWatchOverMutualTLS(t *testing.T) {
	ca := cptest.NewCA(t)
	srv := ca.Server(t)
	cfg := controlplane.Config{Dir: "../../examples/clusterset"}
	cfg.XDSTLS.Cert, cfg.XDSTLS.Key, cfg.XDSTLS.ClientCA = srv.CertFile, srv.KeyFile, ca.File
	app := cptest.StartWith(t, cfg)
	east := ca.Client(t, "spiffe://eastwest.io/clusterset/demo/cluster/east/role/client")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := []string{"--xds-address", app.XDSAddr(), "--node-cluster", "east", "--updates", "1",
		"--xds-ca", ca.File, "--xds-cert", east.CertFile, "--xds-key", east.KeyFile}
	if code := watchCommand(ctx, args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), ".svc.clusterset.local:") {
		t.Fatalf("watch over mutual TLS: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	// The plaintext watch retries until cancelled: it is cancelled once
	// it has said so, or after 30 s (a loaded machine's first attempt
	// took more than the 5 s this once allowed).
	plain := &syncbuf.Buffer{}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = watchCommand(ctx, []string{"--xds-address", app.XDSAddr(), "--node-cluster", "east"}, io.Discard, plain)
	}()
	for ctx.Err() == nil && !strings.Contains(plain.String(), "cannot reach "+app.XDSAddr()) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(plain.String(), "cannot reach "+app.XDSAddr()) {
		t.Errorf("a plaintext watch of a TLS server does not say it cannot reach it:\n%s", plain.String())
	}
	if code := run([]string{"watch", "--xds-cert", east.CertFile}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--xds-cert and --xds-key go together") {
		t.Errorf("a certificate without its key: exit %d, %s", code, stderr.String())
	}
}
