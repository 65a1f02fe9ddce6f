package controlplane

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// On shutdown the control plane stops accepting, ends every xDS stream
// cleanly (the client sees the stream end, not an error, and keeps its
// config while it reconnects elsewhere) and returns well within the drain
// timeout.
func TestGracefulShutdownEndsStreamsCleanly(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "east"), 0o755); err != nil {
		t.Fatal(err)
	}
	app, err := NewApp(Config{Dir: dir, XDSAddress: "127.0.0.1:0", DebugAddress: "127.0.0.1:0", DrainTimeout: 10 * time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)), func(*App) http.Handler { return http.NotFoundHandler() })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()

	conn, err := grpc.NewClient(app.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "n", Cluster: "east"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first response: %v", err)
	}
	start := time.Now()
	cancel()
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("stream ended with %v, want a clean end (EOF)", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %v: streams were not ended, the drain timeout was", took)
	}
}
