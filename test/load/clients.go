package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/eastwest-dev/eastwest/internal/cptest"
)

// change is the one-service change the clients wait for.
type change struct {
	id     int
	name   string
	marker uint32
}

// clientsMain runs the simulated clients: it reports "synced <ns>" once
// every client holds every resource, then for each "change i name marker"
// line on in answers "armed i", and "received i t1 t2 ..." (receive times
// in Unix nanoseconds) once every client got that version.
func clientsMain(cfgJSON string, in io.Reader, out io.Writer) int {
	var cfg clientConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "clients:", err)
		return 2
	}
	var current atomic.Pointer[change]
	got := make(chan int64, cfg.Clients)
	synced := make(chan struct{}, cfg.Clients)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Clients)
	for i := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runClient(ctx, cfg, i, &current, got, synced); err != nil && ctx.Err() == nil {
				errs <- err
			}
		}()
	}
	for range cfg.Clients {
		select {
		case <-synced:
		case err := <-errs:
			fmt.Fprintln(os.Stderr, "clients:", err)
			return 1
		}
	}
	fmt.Fprintf(out, "synced %d\n", time.Since(start).Nanoseconds())

	lines := bufio.NewScanner(in)
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) != 4 || f[0] != "change" {
			continue
		}
		id, _ := strconv.Atoi(f[1])
		marker, _ := strconv.ParseUint(f[3], 10, 32)
		current.Store(&change{id: id, name: f[2], marker: uint32(marker)})
		fmt.Fprintf(out, "armed %d\n", id)
		var b strings.Builder
		fmt.Fprintf(&b, "received %d", id)
		for range cfg.Clients {
			select {
			case t := <-got:
				fmt.Fprintf(&b, " %d", t)
			case err := <-errs:
				fmt.Fprintln(os.Stderr, "clients:", err)
				return 1
			case <-time.After(2 * time.Minute):
				fmt.Fprintln(os.Stderr, "clients: a change never arrived")
				return 1
			}
		}
		fmt.Fprintln(out, b.String())
	}
	cancel()
	wg.Wait()
	return 0
}

// runClient is one ADS client subscribed to every name.
func runClient(ctx context.Context, cfg clientConfig, i int, current *atomic.Pointer[change], got chan<- int64, synced chan<- struct{}) error {
	node := &corev3.Node{Id: nodeID(i), Cluster: "east"}
	have := map[string]bool{}
	done := -1
	isSynced := false
	// see handles one received resource; it returns whether the client
	// now has everything.
	see := func(name string, value func() []byte) {
		have[name] = true
		if c := current.Load(); c != nil && c.id > done && name == c.name {
			if cptest.FirstPort(value()) == c.marker {
				done = c.id
				got <- time.Now().UnixNano()
			}
		}
		if !isSynced && len(have) == len(cfg.Names) {
			isSynced = true
			synced <- struct{}{}
		}
	}
	return cptest.FollowEndpoints(ctx, cfg.Address, node, cfg.Names, cfg.Protocol == "delta", see)
}
