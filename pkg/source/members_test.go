package source

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/eastwest-dev/eastwest/pkg/event"
)

// recordingSinks is the Writer as the registry sees it.
type recordingSinks struct {
	mu      sync.Mutex
	sources map[string]bool
	events  map[string][]event.Op
}

func (r *recordingSinks) Sink(src string) func([]event.Event, []Problem) {
	return func(evs []event.Event, _ []Problem) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, ev := range evs {
			r.events[src] = append(r.events[src], ev.Op)
		}
	}
}
func (r *recordingSinks) AddSource(src string)    { r.mu.Lock(); r.sources[src] = true; r.mu.Unlock() }
func (r *recordingSinks) RemoveSource(src string) { r.mu.Lock(); delete(r.sources, src); r.mu.Unlock() }

// stuckAPIServer accepts connections and never answers, as an apiserver
// behind a broken load balancer does; accepted is closed at its first
// connection.
func stuckAPIServer(t *testing.T) (url string, accepted <-chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	first := make(chan struct{})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if len(conns) == 0 {
				close(first)
			}
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "https://" + l.Addr().String(), first
}

func kubeconfigFor(t *testing.T, server, token string) []byte {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// within fails the test when f has not returned after a generous bound:
// what it guards is that f does not wait for a member's apiserver at all
// (the bound only keeps a regression from hanging the suite).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s waited for a member's apiserver that never answers", what)
	}
}

// A member whose apiserver accepts connections and never answers holds
// nothing up: its connection changes (a new Conn, the next generation),
// the other members' statuses are read, it is removed, and the registry
// stops, each without waiting for its discovery, which is cancelled.
func TestAStuckMemberHoldsNothingUp(t *testing.T) {
	server, accepted := stuckAPIServer(t)
	sinks := &recordingSinks{sources: map[string]bool{}, events: map[string][]event.Op{}}
	d := NewMembers("", slog.New(slog.NewTextHandler(io.Discard, nil)), sinks)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	running := make(chan struct{})
	go func() { d.Run(ctx); close(running) }()

	within(t, "adding a member", func() { d.Set(ctx, "secrets", map[string][]byte{"stuck": kubeconfigFor(t, server, "one")}) })
	conn1, ok := d.Conn("stuck")
	if !ok || conn1.Generation != 1 {
		t.Fatalf("Conn = %v, %v", conn1, ok)
	}
	within(t, "its discovery reaching the apiserver", func() { <-accepted }) // and stuck there
	within(t, "its statuses", func() {
		if st := d.Statuses(); len(st) != 1 || st[0].State != StateConnecting || st[0].Generation != 1 {
			t.Errorf("statuses %+v", st)
		}
	})
	within(t, "new credentials", func() { d.Set(ctx, "secrets", map[string][]byte{"stuck": kubeconfigFor(t, server, "two")}) })
	conn2, _ := d.Conn("stuck")
	if conn2 == conn1 || conn2.Generation != 2 || conn2.Config.BearerToken != "two" {
		t.Errorf("after new credentials: generation %d, token %q", conn2.Generation, conn2.Config.BearerToken)
	}
	within(t, "removing it", func() { d.Set(ctx, "secrets", nil) })
	if _, ok := d.Conn("stuck"); ok {
		t.Error("a removed member still has a connection")
	}
	sinks.mu.Lock()
	if sinks.sources[KubeSourceName("stuck")] || fmt.Sprint(sinks.events[KubeSourceName("stuck")]) != "[leave]" {
		t.Errorf("sources %v, events %v: want the member gone, told once to leave", sinks.sources, sinks.events)
	}
	sinks.mu.Unlock()
	cancel()
	within(t, "stopping the registry", func() { <-running })
}
