package cache

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
)

// Snapshot is what a view holds of one type: for debugging and config
// dumps.
type Snapshot struct {
	Version   string
	UpdatedAt time.Time
	Resources []Published
}

// Published is one resource as the cache serves it.
type Published struct {
	Name    string
	Version string
	// Since is the type version (response version_info) that first
	// carried this version of the resource.
	Since   uint64
	Message proto.Message
}

// Resources returns what a view serves of a type, sorted by name.
func (c *Cache) Resources(viewName, typ string) Snapshot { return c.ResourcesWhere(viewName, typ, nil) }

// ResourcesWhere is Resources for the names keep accepts (nil: all).
// Resources are decoded from their bytes outside the cache's lock, so a
// debug read of a large view never holds up a publish.
func (c *Cache) ResourcesWhere(viewName, typ string, keep func(name string) bool) Snapshot {
	c.mu.Lock()
	v := c.views[viewName]
	if v == nil || v.types[typ] == nil {
		c.mu.Unlock()
		return Snapshot{}
	}
	ts := v.types[typ]
	s := Snapshot{Version: strconv.FormatUint(ts.version, 10), UpdatedAt: ts.updatedAt}
	var entries []*entry
	for n, e := range ts.resources {
		if keep == nil || keep(n) {
			entries = append(entries, e)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(entries, func(a, b *entry) int { return cmp.Compare(a.name, b.name) })
	for _, e := range entries {
		m, err := e.any.UnmarshalNew()
		if err != nil {
			continue // the cache marshalled it: cannot happen
		}
		s.Resources = append(s.Resources, Published{Name: e.name, Version: e.version, Since: e.since, Message: m})
	}
	return s
}

// Has reports whether a view exists and serves a resource.
func (c *Cache) Has(viewName, typ, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.views[viewName]
	if v == nil || !v.exists || v.types[typ] == nil {
		return false
	}
	_, ok := v.types[typ].resources[name]
	return ok
}
