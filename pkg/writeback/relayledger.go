package writeback

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// The relay ledger persists the relay ports (mcs.RelayPins) in the
// control plane's own cluster, where only its operator writes: the
// write-back leader records every allocation, and every replica reads the
// ledger before its first publish and whenever it changes. So an
// allocation never changes while its port exists, across leader changes
// and restarts, even when a port imported later would have taken its
// slot (pkg/mcs/relay.go). It is not kept in the members (an annotation
// on each ServiceImport, say) because a member's admin could edit it
// there and move another member's relay ports.
//
// The ledger is LedgerShards ConfigMaps, <name>-<shard>, labelled
// LabelRelayLedger, a service's ports in the shard of a hash of its key:
// one key per service, "<namespace>.<name>" (neither has a dot), and the
// value its ports, "<port>=<relay port>,..." by port. 10,000 relay ports
// (the whole range) make some 60 KB per shard, far from a ConfigMap's
// 1 MiB.
const (
	LedgerShards     = 16
	LabelRelayLedger = "eastwest.io/relay-ledger"
)

// RelayLedger reads and writes the relay ledger.
type RelayLedger struct {
	client    kubernetes.Interface
	namespace string
	name      string
	log       *slog.Logger

	informer cache.SharedIndexInformer
	mu       sync.Mutex
	bad      string // the last problems logged, so each is logged once
}

// NewRelayLedger returns the ledger of ConfigMaps <name>-<shard> in
// namespace.
func NewRelayLedger(client kubernetes.Interface, namespace, name string, log *slog.Logger) *RelayLedger {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelRelayLedger + "=" + name }))
	return &RelayLedger{client: client, namespace: namespace, name: name, log: log, informer: f.Core().V1().ConfigMaps().Informer()}
}

// Watch reads the ledger until ctx ends, calling sink with the whole
// ledger once it is first listed and after every change. Entries that do
// not parse are skipped and logged.
func (l *RelayLedger) Watch(ctx context.Context, sink func(mcs.RelayPins)) {
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	_, _ = l.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
	})
	go l.informer.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), l.informer.HasSynced) {
		return
	}
	sink(l.Pins())
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			sink(l.Pins())
		}
	}
}

// Pins is the ledger as last seen.
func (l *RelayLedger) Pins() mcs.RelayPins {
	pins := mcs.RelayPins{}
	var problems []string
	for _, o := range l.informer.GetStore().List() {
		cm := o.(*corev1.ConfigMap)
		for k, v := range cm.Data {
			key, ports, err := parseLedgerEntry(k, v)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s/%s: %v", cm.Name, k, err))
				continue
			}
			pins[key] = ports
		}
	}
	slices.Sort(problems)
	if msg := strings.Join(problems, "; "); msg != "" {
		l.mu.Lock()
		if msg != l.bad {
			l.log.Warn("relay ledger entries skipped", "configMaps", l.namespace+"/"+l.name+"-*", "problems", msg)
		}
		l.bad = msg
		l.mu.Unlock()
	}
	return pins
}

// Write records in the ledger the relay ports of state. An entry it holds
// is never changed while its port exists: a replica that had not read it
// yet when a newcomer arrived may have let the newcomer take its slot,
// and reads it a moment later, giving the slot back; so a port is added
// only on a slot no entry holds. Unless complete (every member synced),
// it only adds: a service missing from state may only be missing until
// its member syncs, and dropping its entry would let another port take
// its relay port.
func (l *RelayLedger) Write(ctx context.Context, state *mcs.State, complete bool) error {
	have := l.Pins()
	taken := map[int32]bool{}
	for _, ports := range have {
		for _, n := range ports {
			taken[n] = true
		}
	}
	next := mcs.RelayPins{}
	if !complete {
		for k, ports := range have {
			next[k] = maps.Clone(ports)
		}
	}
	for key, st := range state.Services.All() {
		if st.Import == nil {
			continue
		}
		for _, p := range st.Import.Ports {
			if p.RelayPort == 0 {
				continue
			}
			n, ok := have[key][p.Port]
			if !ok {
				if taken[p.RelayPort] {
					continue
				}
				n = p.RelayPort
				taken[n] = true
			}
			if next[key] == nil {
				next[key] = map[int32]int32{}
			}
			next[key][p.Port] = n
		}
	}
	want := make([]map[string]string, LedgerShards)
	for i := range want {
		want[i] = map[string]string{}
	}
	for key, ports := range next {
		var fields []string
		for _, p := range slices.Sorted(maps.Keys(ports)) {
			fields = append(fields, strconv.Itoa(int(p))+"="+strconv.Itoa(int(ports[p])))
		}
		want[ledgerShard(key)][ledgerKey(key)] = strings.Join(fields, ",")
	}
	var errs []error
	for i, data := range want {
		name := fmt.Sprintf("%s-%d", l.name, i)
		o, exists, err := l.informer.GetStore().GetByKey(l.namespace + "/" + name)
		if err != nil {
			return err
		}
		if !exists {
			if len(data) == 0 {
				continue
			}
			cm := &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: l.namespace, Labels: map[string]string{LabelRelayLedger: l.name}},
				Data:       data,
			}
			if _, err := l.client.CoreV1().ConfigMaps(l.namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				errs = append(errs, fmt.Errorf("relay ledger %s: %w", name, err))
			}
			continue
		}
		cm := o.(*corev1.ConfigMap)
		if maps.Equal(cm.Data, data) {
			continue
		}
		cm = cm.DeepCopy()
		cm.Data = data
		// A conflict (the cache was behind) is tried again at the next
		// pass.
		if _, err := l.client.CoreV1().ConfigMaps(l.namespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("relay ledger %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func ledgerKey(key mcs.ServiceKey) string { return key.Namespace + "." + key.Name }

func ledgerShard(key mcs.ServiceKey) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(ledgerKey(key)))
	return int(h.Sum32() % LedgerShards)
}

// parseLedgerEntry reads one service's entry.
func parseLedgerEntry(k, v string) (mcs.ServiceKey, map[int32]int32, error) {
	ns, name, ok := strings.Cut(k, ".")
	if !ok || ns == "" || name == "" || strings.Contains(name, ".") {
		return mcs.ServiceKey{}, nil, errors.New(`the key is not "<namespace>.<name>"`)
	}
	ports := map[int32]int32{}
	for _, f := range strings.Split(v, ",") {
		a, b, ok := strings.Cut(f, "=")
		p, err1 := strconv.ParseInt(a, 10, 32)
		n, err2 := strconv.ParseInt(b, 10, 32)
		if !ok || err1 != nil || err2 != nil || p < 1 || p > 65535 || n < mcs.RelayPortMin || n > mcs.RelayPortMax {
			return mcs.ServiceKey{}, nil, fmt.Errorf("%q is not <port>=<relay port in %d-%d>", f, mcs.RelayPortMin, mcs.RelayPortMax)
		}
		ports[int32(p)] = int32(n)
	}
	return mcs.ServiceKey{Namespace: ns, Name: name}, ports, nil
}
