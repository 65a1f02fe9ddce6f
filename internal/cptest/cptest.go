package cptest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/debug"
)

// Start serves the ClusterSet folder dir until the test ends and returns
// once the control plane is ready. Logs go to stderr with -v only.
func Start(t testing.TB, dir string) *controlplane.App {
	t.Helper()
	return StartWith(t, controlplane.Config{Dir: dir})
}

// StartWith is Start with any configuration; addresses default to free
// loopback ports.
func StartWith(t testing.TB, cfg controlplane.Config) *controlplane.App {
	t.Helper()
	app, _ := Run(t, cfg)
	return app
}

// Run is StartWith that also returns a function stopping the control
// plane before the test ends (as SIGTERM would); it is safe to call twice.
func Run(t testing.TB, cfg controlplane.Config) (*controlplane.App, func()) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.XDSAddress == "" {
		cfg.XDSAddress = "127.0.0.1:0"
	}
	if cfg.DebugAddress == "" {
		cfg.DebugAddress = "127.0.0.1:0"
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = time.Second
	}
	// The batching `xds serve` has by default (WriterOptions' zero
	// holdoff means none).
	if cfg.Writer.Holdoff == 0 && cfg.Writer.MaxDelay == 0 {
		cfg.Writer.Holdoff, cfg.Writer.MaxDelay = controlplane.DefaultHoldoff, controlplane.DefaultMaxDelay
	}
	app, err := controlplane.NewApp(cfg, log, debug.ForApp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("control plane stopped with %v", err)
			}
		})
	}
	t.Cleanup(stop)
	timeout := time.After(60 * time.Second)
	for {
		next := app.Writer.Published()
		if app.Writer.Ready() {
			return app, stop
		}
		select {
		case <-next:
		case <-timeout:
			t.Fatal("control plane not ready after 60s")
		}
	}
}

// DeltaFirst opens a delta ADS stream on conn, sends one request for typ
// as node, and returns the first response (or the stream's error: a
// refusal arrives here as a gRPC status).
func DeltaFirst(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node, typ string) (*discoveryv3.DeltaDiscoveryResponse, error) {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
		return nil, err
	}
	return stream.Recv()
}
