package assemble

import (
	"fmt"
	"slices"
	"strings"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// MaxZoneViews bounds the zone views of one member (all roles). A zone
// view is a whole view (every service translated again for it), made
// when a client of that zone asks for it; the zones of a member's nodes
// are a handful. A view asked for beyond the bound is not made, and its
// clients wait (the Writer logs why).
const MaxZoneViews = 16

// zoneViews are the zone views clients asked for: per member, the
// (role, zone) pairs, in the order asked.
type zoneViews struct {
	byMember map[mcs.ClusterID][]translate.View
	changed  bool
}

// WantView asks for a view a client reads (its name, as
// translate.View.String gives it), and reports whether that made a new
// view: a zone view of a member's client or gateway role, made at the next
// Flush. Names of other views, of clusters that are not members, and of
// zone views over MaxZoneViews for the member, make nothing; the error
// says why for the last.
func (a *Assembler) WantView(name string) (bool, error) {
	v, ok := ParseZoneView(name)
	if !ok || !slices.Contains(a.store.State().ClusterIDs(), v.Cluster) {
		return false, nil
	}
	have := a.zones.byMember[v.Cluster]
	if slices.Contains(have, v) {
		return false, nil
	}
	if len(have) >= MaxZoneViews {
		return false, &ZoneViewsFull{Member: v.Cluster, View: name}
	}
	if a.zones.byMember == nil {
		a.zones.byMember = map[mcs.ClusterID][]translate.View{}
	}
	a.zones.byMember[v.Cluster] = append(have, v)
	a.zones.changed = true
	return true, nil
}

// ZoneViewsFull is WantView's refusal of a zone view over the bound.
type ZoneViewsFull struct {
	Member mcs.ClusterID
	View   string
}

func (e *ZoneViewsFull) Error() string {
	return fmt.Sprintf("member %s has %d zone views, the most there may be: view %s is not made, and its clients wait", e.Member, MaxZoneViews, e.View)
}

// ParseZoneView reads a zone view's name, <cluster>/<role>@<zone>, for the
// roles that have zone views (client and gateway).
func ParseZoneView(name string) (translate.View, bool) {
	base, zone, ok := strings.Cut(name, translate.ZoneSeparator)
	if !ok || zone == "" {
		return translate.View{}, false
	}
	cluster, role, ok := strings.Cut(base, "/")
	if !ok || cluster == "" || !slices.Contains(Roles, translate.Role(role)) {
		return translate.View{}, false
	}
	return translate.View{Cluster: mcs.ClusterID(cluster), Role: translate.Role(role), Zone: zone}, true
}

// prune forgets the zone views of clusters that are not members.
func (z *zoneViews) prune(members []mcs.ClusterID) {
	for id := range z.byMember {
		if !slices.Contains(members, id) {
			delete(z.byMember, id)
		}
	}
}
