// Package cptest starts the real control plane for tests: the same App
// `xds serve` runs, on loopback with free ports, stopped when the test ends.
package cptest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/debug"
)

// Start serves the ClusterSet folder dir until the test ends and returns
// once the control plane is ready. Logs go to stderr with -v only.
func Start(t testing.TB, dir string) *controlplane.App {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	app, err := controlplane.NewApp(controlplane.Config{
		Dir: dir, XDSAddress: "127.0.0.1:0", DebugAddress: "127.0.0.1:0", DrainTimeout: time.Second,
	}, log, debug.ForApp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane stopped with %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !app.Writer.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("control plane not ready after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return app
}
