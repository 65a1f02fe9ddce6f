package writeback

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1client "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/typed/apis/v1"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// statusKey names an object whose status eastwest writes.
type statusKey struct{ kind, namespace, name string }

// StatusChanged is told the Gateway API statuses of a member; the leader
// writes those that differ from the last ones it was told (all of them on
// a full pass) at the member's next pass.
func (w *Writeback) StatusChanged(member string, statuses []gatewayapi.Status) {
	index := func(sts []gatewayapi.Status) map[statusKey]gatewayapi.Status {
		out := make(map[statusKey]gatewayapi.Status, len(sts))
		for _, st := range sts {
			out[statusKey{st.Kind, st.Namespace, st.Name}] = st
		}
		return out
	}
	w.mu.Lock()
	if w.statuses == nil {
		w.statuses = map[string][]gatewayapi.Status{}
		w.statusPending = map[string]map[statusKey]bool{}
	}
	before, after := index(w.statuses[member]), index(statuses)
	w.statuses[member] = statuses
	pending := w.statusPending[member]
	if pending == nil {
		pending = map[statusKey]bool{}
	}
	for k, st := range after {
		if old, ok := before[k]; !ok || !apiequality.Semantic.DeepEqual(old, st) {
			pending[k] = true
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			pending[k] = true
		}
	}
	changed := len(pending) > 0
	if changed {
		w.statusPending[member] = pending
		w.queueLocked(member)
	}
	w.mu.Unlock()
	if !changed {
		return
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// writeStatuses writes a member's pending statuses (every status when
// all is set). Route parents this controller wrote before and no longer
// owns are removed; other controllers' parents are left as they are.
func (m *member) writeStatuses(ctx context.Context, statuses []gatewayapi.Status, pending map[statusKey]bool, all bool, now time.Time) error {
	if m.written == nil {
		m.written = map[statusKey]bool{}
	}
	var errs []error
	if all {
		// A new leader (or a resync) also finds the route parents an
		// earlier leader wrote, so that those it no longer owns go.
		// Best effort: a member without the Gateway API (or that does
		// not let eastwest list routes) has none of ours.
		if err := m.findOwnedRoutes(ctx); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
			errs = append(errs, err)
		}
	}
	want := map[statusKey]bool{}
	for _, st := range statuses {
		k := statusKey{st.Kind, st.Namespace, st.Name}
		want[k] = true
		if !all && !pending[k] {
			continue
		}
		if err := m.writeStatus(ctx, st, now); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("%s %s/%s status: %w", st.Kind, st.Namespace, st.Name, err))
		}
	}
	for k := range m.written {
		if !want[k] && (k.kind == "HTTPRoute" || k.kind == "GRPCRoute") {
			if err := m.writeStatus(ctx, gatewayapi.Status{Kind: k.kind, Namespace: k.namespace, Name: k.name, Route: &gwapiv1.RouteStatus{}}, now); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
		}
		delete(m.written, k)
	}
	for k := range want {
		m.written[k] = true
	}
	return errors.Join(errs...)
}

// findOwnedRoutes records the routes whose status has a parent of this
// controller.
func (m *member) findOwnedRoutes(ctx context.Context) error {
	owned := func(ps []gwapiv1.RouteParentStatus) bool {
		return slices.ContainsFunc(ps, func(p gwapiv1.RouteParentStatus) bool { return p.ControllerName == gatewayapi.ControllerName })
	}
	hs, err := m.gw.GatewayV1().HTTPRoutes("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, r := range hs.Items {
		if owned(r.Status.Parents) {
			m.written[statusKey{"HTTPRoute", r.Namespace, r.Name}] = true
		}
	}
	gs, err := m.gw.GatewayV1().GRPCRoutes("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, r := range gs.Items {
		if owned(r.Status.Parents) {
			m.written[statusKey{"GRPCRoute", r.Namespace, r.Name}] = true
		}
	}
	return nil
}

// writeStatus merges one computed status into the object's and updates
// it when something changed.
func (m *member) writeStatus(ctx context.Context, st gatewayapi.Status, now time.Time) error {
	api := m.gw.GatewayV1()
	wrote := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		err := m.updateStatus(ctx, api, st, now)
		if errors.Is(err, errUnchanged) {
			return nil
		}
		wrote = err == nil
		return err
	})
	if wrote {
		// Counted and logged as the MCS objects' writes are.
		m.wrote("updatestatus", st.Kind, st.Namespace, st.Name)
	}
	return err
}

// errUnchanged says that updateStatus found the status as wanted and
// wrote nothing.
var errUnchanged = errors.New("status unchanged")

// updateStatus reads one object and updates its status when it differs
// from st (errUnchanged when it does not).
func (m *member) updateStatus(ctx context.Context, api gwv1client.GatewayV1Interface, st gatewayapi.Status, now time.Time) error {
	switch st.Kind {
	case "GatewayClass":
		cur, err := api.GatewayClasses().Get(ctx, st.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		next := cur.Status
		next.Conditions = mergeConditions(cur.Status.Conditions, st.GatewayClass.Conditions, cur.Generation, now)
		next.SupportedFeatures = st.GatewayClass.SupportedFeatures
		if apiequality.Semantic.DeepEqual(next, cur.Status) {
			return errUnchanged
		}
		cur.Status = next
		_, err = api.GatewayClasses().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	case "Gateway":
		cur, err := api.Gateways(st.Namespace).Get(ctx, st.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		next := cur.Status
		next.Addresses = st.Gateway.Addresses
		next.Conditions = mergeConditions(cur.Status.Conditions, st.Gateway.Conditions, cur.Generation, now)
		next.Listeners = nil
		for _, l := range st.Gateway.Listeners {
			var old []metav1.Condition
			for _, o := range cur.Status.Listeners {
				if o.Name == l.Name {
					old = o.Conditions
				}
			}
			l.Conditions = mergeConditions(old, l.Conditions, cur.Generation, now)
			next.Listeners = append(next.Listeners, l)
		}
		if apiequality.Semantic.DeepEqual(next, cur.Status) {
			return errUnchanged
		}
		cur.Status = next
		_, err = api.Gateways(st.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	case "HTTPRoute":
		cur, err := api.HTTPRoutes(st.Namespace).Get(ctx, st.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !setParents(&cur.Status.RouteStatus, st.Route, cur.Generation, now) {
			return errUnchanged
		}
		_, err = api.HTTPRoutes(st.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	case provision.KindGatewayParameters:
		return m.updateParametersStatus(ctx, st, now)
	case "GRPCRoute":
		cur, err := api.GRPCRoutes(st.Namespace).Get(ctx, st.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !setParents(&cur.Status.RouteStatus, st.Route, cur.Generation, now) {
			return errUnchanged
		}
		_, err = api.GRPCRoutes(st.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	}
	return fmt.Errorf("unknown status kind %q", st.Kind)
}

// setParents merges want into a route's status and reports whether it
// changed (and needs writing).
func setParents(cur *gwapiv1.RouteStatus, want *gwapiv1.RouteStatus, gen int64, now time.Time) bool {
	next, changed := mergeParents(*cur, want, gen, now)
	*cur = next
	return changed
}

// mergeParents replaces this controller's parents in a route status,
// keeping other controllers' parents and unchanged transition times.
func mergeParents(cur gwapiv1.RouteStatus, want *gwapiv1.RouteStatus, gen int64, now time.Time) (gwapiv1.RouteStatus, bool) {
	var next gwapiv1.RouteStatus
	for _, p := range cur.Parents {
		if p.ControllerName != gatewayapi.ControllerName {
			next.Parents = append(next.Parents, p)
		}
	}
	for _, p := range want.Parents {
		var old []metav1.Condition
		for _, o := range cur.Parents {
			if o.ControllerName == gatewayapi.ControllerName && apiequality.Semantic.DeepEqual(o.ParentRef, p.ParentRef) {
				old = o.Conditions
			}
		}
		p.Conditions = mergeConditions(old, p.Conditions, gen, now)
		next.Parents = append(next.Parents, p)
	}
	if next.Parents == nil {
		next.Parents = []gwapiv1.RouteParentStatus{}
	}
	if cur.Parents == nil {
		cur.Parents = []gwapiv1.RouteParentStatus{}
	}
	return next, !apiequality.Semantic.DeepEqual(next, cur)
}

// mergeConditions gives computed conditions the object's generation and
// a transition time: the old one while the status is unchanged, now
// otherwise.
func mergeConditions(old, want []metav1.Condition, gen int64, now time.Time) []metav1.Condition {
	out := make([]metav1.Condition, 0, len(want))
	for _, c := range want {
		c.ObservedGeneration = gen
		c.LastTransitionTime = metav1.NewTime(now)
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		out = append(out, c)
	}
	return out
}

// StatusObjects renders computed statuses as the objects they belong to
// (kind, name, generation and status; no spec), transition times set to
// now: what `xds translate` and the golden files show.
func StatusObjects(statuses []gatewayapi.Status, now time.Time) []map[string]any {
	var out []map[string]any
	for _, st := range statuses {
		meta := map[string]any{"name": st.Name, "generation": st.Generation}
		if st.Namespace != "" {
			meta["namespace"] = st.Namespace
		}
		var status any
		switch {
		case st.GatewayClass != nil:
			s := *st.GatewayClass
			s.Conditions = mergeConditions(nil, s.Conditions, st.Generation, now)
			status = s
		case st.Gateway != nil:
			s := *st.Gateway
			s.Conditions = mergeConditions(nil, s.Conditions, st.Generation, now)
			s.Listeners = slices.Clone(s.Listeners)
			for i := range s.Listeners {
				s.Listeners[i].Conditions = mergeConditions(nil, s.Listeners[i].Conditions, st.Generation, now)
			}
			status = s
		case st.Route != nil:
			rs, _ := mergeParents(gwapiv1.RouteStatus{}, st.Route, st.Generation, now)
			status = rs
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&status)
		if err != nil {
			u = map[string]any{"error": err.Error()}
		}
		out = append(out, map[string]any{"apiVersion": gwapiv1.GroupVersion.String(), "kind": st.Kind, "metadata": meta, "status": u})
	}
	return out
}

// updateParametersStatus writes a GatewayParameters' status (its
// Accepted condition), through the dynamic client: eastwest's own kind.
func (m *member) updateParametersStatus(ctx context.Context, st gatewayapi.Status, now time.Time) error {
	api := m.dyn.Resource(provision.GroupVersion.WithResource("gatewayparameters")).Namespace(st.Namespace)
	u, err := api.Get(ctx, st.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var cur provision.GatewayParameters
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &cur); err != nil {
		return err
	}
	next := cur.Status
	next.Conditions = mergeConditions(cur.Status.Conditions, st.Parameters.Conditions, cur.Generation, now)
	if apiequality.Semantic.DeepEqual(next, cur.Status) {
		return errUnchanged
	}
	status, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&next)
	if err != nil {
		return err
	}
	u.Object["status"] = status
	_, err = api.UpdateStatus(ctx, u, metav1.UpdateOptions{})
	return err
}
