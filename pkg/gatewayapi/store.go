package gatewayapi

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// Inputs are one member cluster's Gateway API objects.
type Inputs struct {
	Member string
	// Namespaces holds every namespace's labels (allowedRoutes selectors).
	Namespaces map[string]map[string]string
	Classes    map[string]*gwapiv1.GatewayClass
	Gateways   map[types.NamespacedName]*gwapiv1.Gateway
	HTTPRoutes map[types.NamespacedName]*gwapiv1.HTTPRoute
	GRPCRoutes map[types.NamespacedName]*gwapiv1.GRPCRoute
	Grants     map[types.NamespacedName]*gwapiv1.ReferenceGrant
	// Secrets are the member's TLS Secrets (type kubernetes.io/tls).
	Secrets map[types.NamespacedName]*corev1.Secret
	// Services are the Services in front of Gateways' Envoys (labelled
	// gateway.networking.k8s.io/gateway-name, GEP-1762): their addresses
	// are the Gateways' status.addresses.
	Services map[types.NamespacedName]*corev1.Service
	// Parameters are the member's GatewayParameters (eastwest.io), which
	// GatewayClasses and Gateways name.
	Parameters map[types.NamespacedName]*provision.GatewayParameters
}

func newInputs(member string) *Inputs {
	return &Inputs{
		Member:     member,
		Namespaces: map[string]map[string]string{},
		Classes:    map[string]*gwapiv1.GatewayClass{},
		Gateways:   map[types.NamespacedName]*gwapiv1.Gateway{},
		HTTPRoutes: map[types.NamespacedName]*gwapiv1.HTTPRoute{},
		GRPCRoutes: map[types.NamespacedName]*gwapiv1.GRPCRoute{},
		Grants:     map[types.NamespacedName]*gwapiv1.ReferenceGrant{},
		Secrets:    map[types.NamespacedName]*corev1.Secret{},
		Services:   map[types.NamespacedName]*corev1.Service{},
		Parameters: map[types.NamespacedName]*provision.GatewayParameters{},
	}
}

// Store holds every member's Gateway API inputs. Like mcs.Store it is
// owned by one goroutine (the writer).
type Store struct {
	members map[string]*Inputs
	dirty   map[string]bool
}

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{members: map[string]*Inputs{}, dirty: map[string]bool{}} }

// Apply records an event. Namespace events are recorded (labels) and
// also belong to the MCS store; other objects must satisfy Handles.
func (s *Store) Apply(ev event.Event) error {
	if ev.Op == event.OpLeave {
		if _, ok := s.members[ev.Member]; ok {
			delete(s.members, ev.Member)
			s.dirty[ev.Member] = true
		}
		return nil
	}
	if ev.Op == event.OpJoin || ev.Object == nil {
		return nil
	}
	in := s.members[ev.Member]
	if in == nil {
		in = newInputs(ev.Member)
		s.members[ev.Member] = in
	}
	del := ev.Op == event.OpDelete
	key := types.NamespacedName{Namespace: ev.Object.GetNamespace(), Name: ev.Object.GetName()}
	switch o := ev.Object.(type) {
	case *corev1.Namespace:
		if !del && maps.Equal(in.Namespaces[o.Name], o.Labels) {
			if _, ok := in.Namespaces[o.Name]; ok {
				return nil // only labels matter here
			}
		}
		set(in.Namespaces, o.Name, o.Labels, del)
		if o.Labels == nil && !del {
			in.Namespaces[o.Name] = map[string]string{}
		}
	case *gwapiv1.GatewayClass:
		set(in.Classes, o.Name, o, del)
	case *gwapiv1.Gateway:
		set(in.Gateways, key, o, del)
	case *gwapiv1.HTTPRoute:
		set(in.HTTPRoutes, key, o, del)
	case *gwapiv1.GRPCRoute:
		set(in.GRPCRoutes, key, o, del)
	case *gwapiv1.ReferenceGrant:
		set(in.Grants, key, o, del)
	case *provision.GatewayParameters:
		set(in.Parameters, key, o, del)
	case *corev1.Secret:
		if o.Type != corev1.SecretTypeTLS {
			return nil
		}
		set(in.Secrets, key, o, del)
	case *corev1.Service:
		// Only the Services in front of Gateways; a delete may come as a
		// stub without labels.
		_, had := in.Services[key]
		if o.Labels[gwapiv1.GatewayNameLabelKey] == "" && !had {
			return nil
		}
		set(in.Services, key, o, del || o.Labels[gwapiv1.GatewayNameLabelKey] == "")
	default:
		return fmt.Errorf("unsupported object %T", ev.Object)
	}
	s.dirty[ev.Member] = true
	return nil
}

func set[K comparable, V any](m map[K]V, k K, v V, del bool) {
	if del {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// Inputs returns a member's inputs (nil when it has none). The maps are
// the Store's: read them before the next Apply.
func (s *Store) Inputs(member string) *Inputs { return s.members[member] }

// TakeDirty returns the members whose inputs changed since the last call.
func (s *Store) TakeDirty() []string {
	out := slices.Sorted(maps.Keys(s.dirty))
	clear(s.dirty)
	return out
}
