package memberapi

import (
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
)

// historySize bounds the events kept for watches that resume: a watch
// from an older resource version gets 410 Gone and relists, as with a
// real apiserver's watch cache (100 events per resource by default; here
// 200 for all of a member's resources). Each event holds its object: at
// 10,000 a member, 250 members under the scale benchmark's churn held
// some 9 GB.
const historySize = 200

// firstRV is a member's first resource version. Its history is whole
// until Compact (or more than historySize changes): a watch from any
// version before then replays what followed, as a real apiserver whose
// watch cache has evicted nothing does.
const firstRV = 100

// Member is one simulated cluster: its objects, resource versions and
// watches.
type Member struct {
	name     string
	requests sync.Map // verb -> *atomic.Int64
	down     atomic.Bool

	mu      sync.Mutex
	rv      int64
	objects map[string]map[string]object // resource -> namespace/name -> object
	history []change                     // the last historySize changes, oldest first
	// oldest is the resource version a watch must be at least at.
	oldest   int64
	watchers map[*watcher]struct{}
	nextIP   netip.Addr
}

// change is one event of the store.
type change struct {
	typ      watch.EventType
	resource string
	obj      object
	// old is the object before a modification (nil otherwise), for
	// selectors that stop or start matching.
	old object
	rv  int64
	// enc holds the change's watch frames, encoded once for all its
	// watches.
	enc *encodings
}

// encodings are a change's watch frames, JSON and protobuf, each encoded
// on first use.
type encodings struct {
	json, proto struct {
		once sync.Once
		b    []byte
		err  error
	}
}

func (e *encodings) frame(res *Resource, c change, proto bool) ([]byte, error) {
	if proto {
		e.proto.once.Do(func() { e.proto.b, e.proto.err = watchFrame(res, string(c.typ), c.obj) })
		return e.proto.b, e.proto.err
	}
	e.json.once.Do(func() { e.json.b = append(mustJSON(watchEvent{Type: c.typ, Object: c.obj}), '\n') })
	return e.json.b, nil
}

func newMember(name string) *Member {
	return &Member{name: name, rv: firstRV, oldest: 0, objects: map[string]map[string]object{}, watchers: map[*watcher]struct{}{},
		nextIP: netip.MustParseAddr("10.96.0.10")}
}

// Compact forgets every change so far: a watch resuming from before now
// gets 410 Gone (as after etcd's compaction), and its informer relists.
func (m *Member) Compact() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.history = nil
	m.oldest = m.rv
}

func key(namespace, name string) string { return namespace + "/" + name }

// record stores a change and wakes the watches; called with m.mu held.
func (m *Member) record(c change) {
	c.enc = &encodings{}
	if c.old != nil && sameSelectable(c.old, c.obj) {
		// What a selector reads did not change: the change is the same
		// event for every watch, and need not hold the object it
		// replaced (half the memory of the history).
		c.old = nil
	}
	m.history = append(m.history, c)
	if len(m.history) > historySize {
		drop := len(m.history) - historySize
		m.oldest = m.history[drop-1].rv
		m.history = append(m.history[:0], m.history[drop:]...)
	}
	for w := range m.watchers {
		w.offer(c)
	}
}

// sameSelectable reports whether two versions of an object look the same
// to every selector: labels, and the type field (name and namespace never
// change).
func sameSelectable(a, b object) bool {
	la, _ := meta(a)["labels"].(map[string]any)
	lb, _ := meta(b)["labels"].(map[string]any)
	return reflect.DeepEqual(la, lb) && a["type"] == b["type"]
}

// bump returns the next resource version; called with m.mu held.
func (m *Member) bump() int64 {
	m.rv++
	return m.rv
}

// selector is a list or watch's label and field selectors.
type selector struct {
	namespace string
	labels    labels.Selector
	fields    fields.Selector
}

func parseSelector(namespace string, q map[string][]string) (selector, error) {
	s := selector{namespace: namespace, labels: labels.Everything(), fields: fields.Everything()}
	var err error
	if v := first(q["labelSelector"]); v != "" {
		if s.labels, err = labels.Parse(v); err != nil {
			return s, err
		}
	}
	if v := first(q["fieldSelector"]); v != "" {
		if s.fields, err = fields.ParseSelector(v); err != nil {
			return s, err
		}
	}
	return s, nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// matches reports whether an object is selected.
func (s selector) matches(o object) bool {
	if o == nil {
		return false
	}
	md := meta(o)
	if s.namespace != "" && str(md, "namespace") != s.namespace {
		return false
	}
	ls := labels.Set{}
	if l, ok := md["labels"].(map[string]any); ok {
		for k, v := range l {
			ls[k], _ = v.(string)
		}
	}
	if !s.labels.Matches(ls) {
		return false
	}
	fs := fields.Set{"metadata.name": str(md, "name"), "metadata.namespace": str(md, "namespace")}
	if t, ok := o["type"].(string); ok {
		fs["type"] = t
	}
	return s.fields.Matches(fs)
}

func setRV(o object, rv int64) { meta(o)["resourceVersion"] = strconv.FormatInt(rv, 10) }

// statusError is a Kubernetes Status with its HTTP code.
type statusError struct{ metav1.Status }

func (e *statusError) Error() string { return e.Message }

func newStatus(code int32, reason metav1.StatusReason, msg string) *statusError {
	return &statusError{metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
}

func notFound(group, resource, name string) *statusError {
	e := newStatus(404, metav1.StatusReasonNotFound, fmt.Sprintf("%s %q not found", resource, name))
	e.Details = &metav1.StatusDetails{Name: name, Group: group, Kind: resource}
	return e
}

func conflict(resource, name, msg string) *statusError {
	e := newStatus(409, metav1.StatusReasonConflict, fmt.Sprintf("Operation cannot be fulfilled on %s %q: %s", resource, name, msg))
	e.Details = &metav1.StatusDetails{Name: name, Kind: resource}
	return e
}

func alreadyExists(resource, name string) *statusError {
	e := newStatus(409, metav1.StatusReasonAlreadyExists, fmt.Sprintf("%s %q already exists", resource, name))
	e.Details = &metav1.StatusDetails{Name: name, Kind: resource}
	return e
}

func badRequest(msg string) *statusError { return newStatus(400, metav1.StatusReasonBadRequest, msg) }

func gone(msg string) *statusError { return newStatus(410, metav1.StatusReasonExpired, msg) }
