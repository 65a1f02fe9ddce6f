package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/eastwest-dev/eastwest/pkg/cache"
)

// TLSFiles names a serving certificate and key, and optionally a CA whose
// client certificates are required (mutual TLS). Empty: plaintext.
type TLSFiles struct {
	Cert, Key, ClientCA string
}

// Config loads the files into a TLS configuration, or returns nil for
// plaintext.
func (f TLSFiles) Config() (*tls.Config, error) {
	if f.Cert == "" && f.Key == "" && f.ClientCA == "" {
		return nil, nil
	}
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("TLS needs both a certificate and a key")
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if f.ClientCA != "" {
		pem, err := os.ReadFile(f.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s holds no PEM certificate", f.ClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// XDSServer serves ADS (state of the world and delta) and the per-type
// discovery services from the cache.
type XDSServer struct {
	grpc   *grpc.Server
	cancel context.CancelFunc
}

// NewXDSServer builds the gRPC server. Keepalive pings find dead clients
// (and keep NATs open) within a minute; clients may ping every 10 s.
func NewXDSServer(c *cache.Cache, t *cache.Tracker, tlsConfig *tls.Config) *XDSServer {
	ctx, cancel := context.WithCancel(context.Background())
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(100000),
	}
	opts = append(opts, cache.ServerOptions()...)
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	g := grpc.NewServer(opts...)
	xds := cache.NewServer(ctx, c, t)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, xds)
	routeservice.RegisterRouteDiscoveryServiceServer(g, xds)
	return &XDSServer{grpc: g, cancel: cancel}
}

// Serve serves on l until Shutdown.
func (s *XDSServer) Serve(l net.Listener) error {
	err := s.grpc.Serve(l)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, ends every stream cleanly (clients
// reconnect to another replica and keep their config meanwhile), and
// waits for that up to timeout before closing connections.
func (s *XDSServer) Shutdown(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	s.cancel()
	select {
	case <-done:
	case <-time.After(timeout):
		// Stop closes every connection; it waits for handlers too, so a
		// handler that never returns is left behind (Run's bound ends
		// the process regardless).
		stopped := make(chan struct{})
		go func() { s.grpc.Stop(); close(stopped) }()
		select {
		case <-done:
		case <-stopped:
		case <-time.After(time.Second):
		}
	}
}
