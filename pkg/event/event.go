package event

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Op is what an Event does.
type Op int

// The operations a source reports.
const (
	// OpUpsert adds or replaces Object in Member.
	OpUpsert Op = iota
	// OpDelete removes Object (only its kind, namespace and name are read).
	OpDelete
	// OpJoin adds Member to the ClusterSet, even while it holds nothing.
	OpJoin
	// OpLeave removes Member and everything it held from the ClusterSet.
	OpLeave
)

func (o Op) String() string {
	switch o {
	case OpUpsert:
		return "upsert"
	case OpDelete:
		return "delete"
	case OpJoin:
		return "join"
	case OpLeave:
		return "leave"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Event is one change seen by a source in one member cluster.
//
// Object is an object of a kind the sources read (Kinds):
// an MCS input, a Gateway API object or a TLS Secret. The stores keep
// only what they read of it and never modify it, so sources may pass
// shared (informer cache) objects.
type Event struct {
	// Member is the configured name of the member cluster.
	Member string
	Op     Op
	Object metav1.Object
}
