package source

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/eastwest-dev/eastwest/pkg/event"
)

// SinkFor gives each member its sink; Added and Removed tell whoever
// tracks readiness that a member's source appeared or is gone.
type SinkFor interface {
	Sink(source string) func([]event.Event, []Problem)
	AddSource(source string)
	RemoveSource(source string)
}

// KubeSourceName names the source of a Kubernetes member cluster.
func KubeSourceName(member string) string { return "kube:" + member }

// Members is the registry of Kubernetes member clusters: it runs one
// KubeCluster per member, per kubeconfig file in a folder, named by the file (without its extension), and per
// remote secret (see Secrets). A new file joins the ClusterSet, a removed
// file leaves it (its state is drained), a changed file reconnects (its
// state is kept meanwhile). Files whose names start with "." are ignored.
type Members struct {
	dir  string
	log  *slog.Logger
	out  SinkFor
	poll time.Duration

	mu      sync.Mutex
	members map[string]*runningMember

	secrets *Secrets
	// StaleAfter is given to every member (see KubeCluster.StaleAfter).
	StaleAfter time.Duration
}

type runningMember struct {
	hash    [32]byte
	origin  string
	cluster *KubeCluster
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewMembers returns the member registry of a folder.
func NewMembers(dir string, log *slog.Logger, out SinkFor) *Members {
	return &Members{dir: dir, log: log, out: out, poll: 2 * time.Second, members: map[string]*runningMember{}}
}

// Config returns a member's rest.Config.
func (d *Members) Config(member string) (*rest.Config, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.members[member]
	if !ok {
		return nil, false
	}
	return m.cluster.cfg, true
}

// SyncedAt is when a member's source last (re)synced with its apiserver:
// it changes when the source reconnects, and whoever else watches the
// member (the write-back) starts its informers again then, rather than
// waiting out their reflectors' backoff.
func (d *Members) SyncedAt(member string) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.members[member]
	if !ok {
		return time.Time{}
	}
	return m.cluster.Status().SyncedAt
}

// Statuses returns every member's connection status, sorted.
func (d *Members) Statuses() []ClusterStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []ClusterStatus
	for _, m := range d.members {
		out = append(out, m.cluster.Status())
	}
	slices.SortFunc(out, func(a, b ClusterStatus) int { return strings.Compare(a.Member, b.Member) })
	return out
}

// Scan reads the folder once and starts, restarts or removes members; it
// is called at start (so that every configured member is a source before
// the first publish) and then by Run.
func (d *Members) Scan(ctx context.Context) {
	if d.dir == "" {
		return
	}
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		d.log.Error("cannot read kubeconfig folder", "dir", d.dir, "err", err)
		return
	}
	want := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d.dir, e.Name()))
		if err != nil {
			d.log.Error("cannot read kubeconfig", "file", e.Name(), "err", err)
			continue
		}
		want[strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))] = b
	}
	d.Set(ctx, "dir", want)
}

// Set declares the members one origin (the folder, the remote secrets)
// provides, by name, with their kubeconfigs: new ones join, missing ones
// leave (their state is drained), changed ones reconnect (their state is
// kept meanwhile). A name provided by two origins is used once, from the
// first origin that set it.
func (d *Members) Set(ctx context.Context, origin string, kubeconfigs map[string][]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, m := range d.members {
		if m.origin != origin {
			continue
		}
		b, ok := kubeconfigs[name]
		if ok && sha256.Sum256(b) == m.hash {
			continue
		}
		m.cancel()
		<-m.done
		delete(d.members, name)
		if !ok {
			d.log.Info("member cluster removed", "member", name, "origin", origin)
			m.cluster.Remove()
			d.out.RemoveSource(KubeSourceName(name))
		}
	}
	for name, b := range kubeconfigs {
		if m, ok := d.members[name]; ok {
			if m.origin != origin {
				d.log.Warn("member cluster defined twice: the first definition is used", "member", name, "used", m.origin, "ignored", origin)
			}
			continue
		}
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			d.log.Error("member name is not a DNS subdomain", "member", name, "origin", origin, "reason", msgs[0])
			continue
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(b)
		if err != nil {
			// The error names the member, never its credentials.
			d.log.Error("cannot use kubeconfig", "member", name, "origin", origin, "err", err)
			continue
		}
		cfg.QPS, cfg.Burst = 50, 100
		src := KubeSourceName(name)
		d.out.AddSource(src)
		kc := NewKubeCluster(name, cfg, d.log, d.out.Sink(src))
		kc.StaleAfter = d.StaleAfter
		mctx, cancel := context.WithCancel(ctx)
		m := &runningMember{hash: sha256.Sum256(b), origin: origin, cluster: kc, cancel: cancel, done: make(chan struct{})}
		go func() { kc.Run(mctx); close(m.done) }()
		d.members[name] = m
		d.log.Info("member cluster added", "member", name, "origin", origin)
	}
}

// Run rescans the folder until ctx ends, then stops every member without
// removing it (a restart must not drain traffic).
func (d *Members) Run(ctx context.Context) {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			for _, m := range d.members {
				m.cancel()
				<-m.done
			}
			d.mu.Unlock()
			return
		case <-t.C:
			d.Scan(ctx)
			if d.secrets != nil {
				d.scanSecrets(ctx)
			}
		}
	}
}
