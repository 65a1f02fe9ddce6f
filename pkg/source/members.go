package source

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	cpv1a1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

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

// Members is the registry of Kubernetes member clusters: it owns one
// connection (Conn) per member and runs one KubeCluster on it, per
// kubeconfig file in a folder, named by the file (without its
// extension), and per remote secret (see Secrets). A new file joins the
// ClusterSet, a removed file leaves it (its state is drained), a changed
// file reconnects with a new Conn (its state is kept meanwhile, and the
// write-back moves to the new Conn). Files whose names start with "."
// are ignored.
//
// Nothing waits for a member under the registry's lock: a member stuck
// connecting never holds up another member, /debug/clusters, the metrics
// or the write-back.
type Members struct {
	dir  string
	log  *slog.Logger
	out  SinkFor
	poll time.Duration

	mu      sync.Mutex
	members map[string]*runningMember
	// invalid are the members whose access cannot be used (and that have
	// no connection of the same origin), by name.
	invalid map[string]invalid
	// generations is the last generation of each member name's Conn.
	generations map[string]int64
	// running counts the members' goroutines, stopped or not.
	running sync.WaitGroup

	secrets  *Secrets
	profiles *profileWatch
	// StaleAfter is given to every member (see KubeCluster.StaleAfter).
	StaleAfter time.Duration
	// onSynced is called with a member's name after each of its syncs.
	onSynced func(member string)
}

type runningMember struct {
	hash    [32]byte
	origin  string
	conn    *Conn
	cluster *KubeCluster
	cancel  context.CancelFunc
}

// NewMembers returns the member registry of a folder.
func NewMembers(dir string, log *slog.Logger, out SinkFor) *Members {
	return &Members{dir: dir, log: log, out: out, poll: 2 * time.Second, members: map[string]*runningMember{}, invalid: map[string]invalid{}, generations: map[string]int64{}}
}

// OnSynced makes f be called with a member's name each time its source
// has (re)synced with its apiserver: the write-back then retries it at
// once rather than waiting out its backoff. Set it before Scan.
func (d *Members) OnSynced(f func(member string)) { d.onSynced = f }

// Conn returns a member's current connection.
func (d *Members) Conn(member string) (*Conn, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.members[member]
	if !ok {
		return nil, false
	}
	return m.conn, true
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
	for name, m := range d.members {
		st := m.cluster.Status()
		if inv, ok := d.invalid[name]; ok {
			st.AccessError = inv.err.Error()
		}
		out = append(out, st)
	}
	for name, inv := range d.invalid {
		if _, ok := d.members[name]; !ok {
			out = append(out, ClusterStatus{Member: name, State: StateFailing, Origin: inv.origin, LastError: inv.err.Error(), Failures: 1, Since: inv.since})
		}
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
	want := make(map[string]access, len(kubeconfigs))
	for name, b := range kubeconfigs {
		a := access{hash: sha256.Sum256(b)}
		if a.cfg, a.err = clientcmd.RESTConfigFromKubeConfig(b); a.err != nil {
			// The error names the member, never its credentials.
			a.err = fmt.Errorf("cannot use kubeconfig: %w", a.err)
		}
		want[name] = a
	}
	d.setAccess(ctx, origin, want)
}

// access is how to reach one member, as its origin gives it.
type access struct {
	// hash changes whenever the access does (a new Conn is made then).
	hash [32]byte
	cfg  *rest.Config
	// err is why the origin's access cannot be used: the member keeps
	// the connection it has, if any, and shows the error.
	err error
	// profile is the member's ClusterProfile (from the inventory).
	profile *cpv1a1.ClusterProfile
}

// invalid is a member whose access cannot be used, shown in Statuses.
type invalid struct {
	origin string
	err    error
	since  time.Time
}

// setAccess declares the members one origin provides; see Set.
func (d *Members) setAccess(ctx context.Context, origin string, want map[string]access) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, inv := range d.invalid {
		if a, ok := want[name]; inv.origin == origin && (!ok || a.err == nil) {
			delete(d.invalid, name)
		}
	}
	handover := map[string]map[kubeKey]string{}
	for name, m := range d.members {
		if m.origin != origin {
			continue
		}
		a, ok := want[name]
		if ok && (a.hash == m.hash || a.err != nil) {
			// Unchanged, or changed into something unusable: the
			// member keeps the connection it has.
			if a.err != nil {
				d.noteInvalid(name, origin, a.err)
			}
			m.cluster.setProfile(trimProfile(a.profile))
			continue
		}
		// The old run stops on its own; it sends nothing from now on.
		m.cancel()
		delete(d.members, name)
		if !ok {
			d.log.Info("member cluster removed", "member", name, "origin", origin)
			m.cluster.Remove()
			d.out.RemoveSource(KubeSourceName(name))
			continue
		}
		handover[name] = m.cluster.close()
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		a := want[name]
		if m, ok := d.members[name]; ok {
			if m.origin != origin {
				d.log.Warn("member cluster defined twice: the first definition is used", "member", name, "used", m.origin, "ignored", origin)
			}
			continue
		}
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			a.err = fmt.Errorf("member name is not a DNS subdomain: %s", msgs[0])
		}
		if a.err != nil {
			d.noteInvalid(name, origin, a.err)
			continue
		}
		d.start(ctx, name, origin, a, handover[name])
	}
}

// noteInvalid records (and logs, once per error) a member's access that
// cannot be used; called with d.mu held.
func (d *Members) noteInvalid(name, origin string, err error) {
	if inv, ok := d.invalid[name]; ok && inv.err.Error() == err.Error() {
		return
	}
	d.log.Warn("member cluster's access cannot be used", "member", name, "origin", origin, "err", err)
	d.invalid[name] = invalid{origin: origin, err: err, since: time.Now()}
}

// start makes a member's next Conn and runs its source on it; sent is
// what its predecessor told the Store (nil for a new member). Called
// with d.mu held.
func (d *Members) start(ctx context.Context, name, origin string, a access, sent map[kubeKey]string) {
	d.generations[name]++
	conn, err := NewConn(name, origin, d.generations[name], a.cfg)
	if err != nil {
		d.noteInvalid(name, origin, err)
		return
	}
	src := KubeSourceName(name)
	if sent == nil {
		d.out.AddSource(src)
	}
	kc := NewKubeCluster(conn, d.log, d.out.Sink(src))
	kc.StaleAfter = d.StaleAfter
	kc.profile = trimProfile(a.profile)
	if sent != nil {
		kc.sent = sent
	}
	if d.onSynced != nil {
		kc.onSynced = func() { d.onSynced(name) }
	}
	mctx, cancel := context.WithCancel(ctx)
	d.members[name] = &runningMember{hash: a.hash, origin: origin, conn: conn, cluster: kc, cancel: cancel}
	d.running.Go(func() { kc.Run(mctx) })
	if sent == nil {
		d.log.Info("member cluster added", "member", name, "origin", origin)
	} else {
		d.log.Info("member cluster's access changed: reconnecting", "member", name, "origin", origin, "generation", conn.Generation)
	}
}

// Run rescans the folder until ctx ends, then stops every member without
// removing it (a restart must not drain traffic), and waits for them.
func (d *Members) Run(ctx context.Context) {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	if d.profiles != nil {
		d.running.Go(func() { d.runProfiles(ctx) })
	}
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			for _, m := range d.members {
				m.cancel()
			}
			d.mu.Unlock()
			d.running.Wait()
			return
		case <-t.C:
			d.Scan(ctx)
			if d.secrets != nil {
				d.scanSecrets(ctx)
			}
		}
	}
}
