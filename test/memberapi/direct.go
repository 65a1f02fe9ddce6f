package memberapi

import (
	"fmt"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// What a benchmark does to a member without HTTP: populating hundreds of
// members, churning their endpoints, checking what the write-back wrote
// and cutting a member off. Each goes through the same store as a
// request does (resource versions, watch events, conflicts), so eastwest
// sees no difference.

func resource(name string) (*Resource, error) {
	for i := range Resources {
		if Resources[i].GVR.Resource == name {
			return &Resources[i], nil
		}
	}
	return nil, fmt.Errorf("memberapi: no resource %q", name)
}

// Create stores a new object (a typed API object, or its JSON form) as a
// create request does.
func (m *Member) Create(resourceName string, obj any) error {
	res, err := resource(resourceName)
	if err != nil {
		return err
	}
	o, ok := obj.(map[string]any)
	if !ok {
		if o, err = runtime.DefaultUnstructuredConverter.ToUnstructured(obj); err != nil {
			return err
		}
	}
	o = deepCopy(o)
	o["apiVersion"], o["kind"] = apiVersion(res), res.Kind
	ns := str(meta(o), "namespace")
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, serr := m.apply(request{res: res, namespace: ns}, o, true); serr != nil {
		return serr
	}
	return nil
}

// Update changes an object as an update request does: change is given a
// copy of the object to change.
func (m *Member) Update(resourceName, namespace, name string, change func(o map[string]any)) error {
	res, err := resource(resourceName)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.objects[res.GVR.Resource][key(namespace, name)]
	if old == nil {
		return notFound(res.GVR.Group, res.GVR.Resource, name)
	}
	o := deepCopy(old)
	change(o)
	if _, serr := m.apply(request{res: res, namespace: namespace, name: name}, o, false); serr != nil {
		return serr
	}
	return nil
}

// List returns copies of a resource's objects, sorted by namespace and
// name.
func (m *Member) List(resourceName string) []map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	store := m.objects[resourceName]
	out := make([]map[string]any, 0, len(store))
	for _, k := range slices.Sorted(maps.Keys(store)) {
		out = append(out, deepCopy(store[k]))
	}
	return out
}

// SetDown cuts the member off (every request refused with 503, every
// watch ended, as an apiserver that is unreachable or restarting) or
// brings it back.
func (m *Member) SetDown(down bool) {
	m.down.Store(down)
	if down {
		m.closeWatches()
	}
}

func unavailable(name string) *statusError {
	return newStatus(503, metav1.StatusReasonServiceUnavailable, "member "+name+" is down")
}
