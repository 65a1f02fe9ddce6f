package mcs

import (
	"iter"
)

// serviceShards is the number of shards of a Services map: a new State
// copies this many pointers, and the shards a change touched.
const serviceShards = 1024

// Services is an immutable map of merged services by key. States share
// it: the State after a change of one service shares every shard but
// that service's with the State before, so publishing a change costs the
// same at 1,000 and 100,000 services (no copy of the whole map). The zero
// value is empty. Read it from any goroutine.
type Services struct {
	shards *[serviceShards]map[ServiceKey]*ServiceState
	n      int
}

// NewServices returns a Services holding m's entries (tests, tools).
func NewServices(m map[ServiceKey]*ServiceState) Services {
	var b serviceBuilder
	for k, st := range m {
		b.set(k, st)
	}
	return b.snapshot()
}

// Get returns the service of key k, or nil.
func (s Services) Get(k ServiceKey) *ServiceState {
	if s.shards == nil {
		return nil
	}
	return s.shards[shardOf(k)][k]
}

// Len is the number of services.
func (s Services) Len() int { return s.n }

// All yields every service, in no particular order.
func (s Services) All() iter.Seq2[ServiceKey, *ServiceState] {
	return func(yield func(ServiceKey, *ServiceState) bool) {
		if s.shards == nil {
			return
		}
		for _, shard := range s.shards {
			for k, st := range shard {
				if !yield(k, st) {
					return
				}
			}
		}
	}
}

// shardOf hashes a key (FNV-1a) to its shard.
func shardOf(k ServiceKey) int {
	h := uint32(2166136261)
	for i := 0; i < len(k.Namespace); i++ {
		h = (h ^ uint32(k.Namespace[i])) * 16777619
	}
	h = (h ^ '/') * 16777619
	for i := 0; i < len(k.Name); i++ {
		h = (h ^ uint32(k.Name[i])) * 16777619
	}
	return int(h % serviceShards)
}

// serviceBuilder is the Store's working copy of its services: shards
// shared with the last snapshot are copied before their first change
// (copy on write), then changed in place until the next snapshot.
type serviceBuilder struct {
	cur   [serviceShards]map[ServiceKey]*ServiceState
	owned [serviceShards]bool
	n     int
}

func (b *serviceBuilder) get(k ServiceKey) *ServiceState { return b.cur[shardOf(k)][k] }

func (b *serviceBuilder) writable(i int) map[ServiceKey]*ServiceState {
	if !b.owned[i] {
		m := make(map[ServiceKey]*ServiceState, len(b.cur[i])+1)
		for k, v := range b.cur[i] {
			m[k] = v
		}
		b.cur[i], b.owned[i] = m, true
	}
	return b.cur[i]
}

func (b *serviceBuilder) set(k ServiceKey, st *ServiceState) {
	shard := b.writable(shardOf(k))
	if _, had := shard[k]; !had {
		b.n++
	}
	shard[k] = st
}

func (b *serviceBuilder) delete(k ServiceKey) {
	i := shardOf(k)
	if _, had := b.cur[i][k]; !had {
		return
	}
	delete(b.writable(i), k)
	b.n--
}

// keys yields every key of the working copy.
func (b *serviceBuilder) keys() iter.Seq[ServiceKey] {
	return func(yield func(ServiceKey) bool) {
		for _, shard := range b.cur {
			for k := range shard {
				if !yield(k) {
					return
				}
			}
		}
	}
}

// snapshot freezes the working copy: the shards are shared with the
// Services returned and copied again before they next change.
func (b *serviceBuilder) snapshot() Services {
	shards := new([serviceShards]map[ServiceKey]*ServiceState)
	*shards = b.cur
	b.owned = [serviceShards]bool{}
	return Services{shards: shards, n: b.n}
}
