package gatewayapi

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// Lookup is what Build reads of the ClusterSet state.
type Lookup interface {
	// Import returns a service's ClusterSet import, nil when it has none.
	Import(mcs.ServiceKey) *mcs.Import
	// Service returns the member's own Service, nil when it has none.
	Service(mcs.ServiceKey) *mcs.Service
	// Ready says whether the member's own Service has a ready endpoint.
	Ready(mcs.ServiceKey) bool
}

const (
	kindGateway       = "Gateway"
	kindHTTPRoute     = "HTTPRoute"
	kindGRPCRoute     = "GRPCRoute"
	kindService       = "Service"
	kindServiceImport = "ServiceImport"
	kindSecret        = "Secret"
)

// Build computes, purely, what a member's Gateway API objects mean: the
// Gateways eastwest implements with their attached routes, the member's
// mesh routes and every status this controller owns.
func Build(in *Inputs, look Lookup) Result {
	b := &builder{in: in, look: look, res: Result{Mesh: map[mcs.ServiceKey][]*MeshRoute{}, Refs: map[mcs.ServiceKey]bool{}, Fronts: map[mcs.ServiceKey]bool{}, RouteRefs: map[RouteKey][]mcs.ServiceKey{}}}
	if in == nil {
		return b.res
	}
	b.parameters()
	b.classes()
	b.gateways()
	b.routes()
	b.finish()
	return b.res
}

type builder struct {
	in   *Inputs
	look Lookup
	res  Result

	accepted map[string]bool // our accepted GatewayClasses
	// classParams are the accepted classes' GatewayParameters (nil: none).
	classParams map[string]*provision.GatewayParameters
	gws         map[types.NamespacedName]*gatewayState
}

type gatewayState struct {
	obj       *gwapiv1.Gateway
	status    *gwapiv1.GatewayStatus
	listeners []*listenerState
	out       *Gateway
}

type listenerState struct {
	spec   gwapiv1.Listener
	status *gwapiv1.ListenerStatus
	valid  bool
	// attachable: routes attach to it (and count in attachedRoutes) by
	// its allowedRoutes alone, as the spec says, also when it cannot be
	// programmed for a reference it cannot resolve (a missing
	// certificate); not when it is not accepted, conflicts, or its
	// Gateway is refused for its own reasons.
	attachable bool
	kinds      map[string]bool
	out        *Listener
	hosts      map[string]*Host
	attached   int32
}

func cond(t, reason string, ok bool, gen int64, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen}
}

func (b *builder) classes() {
	b.accepted = map[string]bool{}
	b.classParams = map[string]*provision.GatewayParameters{}
	for _, name := range slices.Sorted(maps.Keys(b.in.Classes)) {
		gc := b.in.Classes[name]
		if gc.Spec.ControllerName != ControllerName {
			continue
		}
		ok, reason, msg := true, string(gwapiv1.GatewayClassReasonAccepted), "eastwest implements this class"
		params, err := b.classParameters(gc)
		if err != nil {
			ok, reason, msg = false, string(gwapiv1.GatewayClassReasonInvalidParameters), err.Error()
		}
		b.classParams[name] = params
		b.accepted[name] = ok
		st := &gwapiv1.GatewayClassStatus{Conditions: []metav1.Condition{
			cond(string(gwapiv1.GatewayClassConditionStatusAccepted), reason, ok, gc.Generation, msg),
			cond(string(gwapiv1.GatewayClassConditionStatusSupportedVersion), string(gwapiv1.GatewayClassReasonSupportedVersion), true, gc.Generation, "Gateway API v1.6 standard channel"),
		}}
		if ok {
			// GEP-2162: what the class's Gateways can do.
			st.SupportedFeatures = supportedFeatures()
		}
		b.res.Statuses = append(b.res.Statuses, Status{Kind: "GatewayClass", Name: name, Generation: gc.Generation, GatewayClass: st})
	}
}

// routeKinds are the route kinds an HTTP or HTTPS listener takes.
var routeKinds = []string{kindHTTPRoute, kindGRPCRoute}

func (b *builder) gateways() {
	b.gws = map[types.NamespacedName]*gatewayState{}
	for _, key := range sortedKeys(b.in.Gateways) {
		gw := b.in.Gateways[key]
		if !b.accepted[string(gw.Spec.GatewayClassName)] {
			if gc := b.in.Classes[string(gw.Spec.GatewayClassName)]; gc != nil && gc.Spec.ControllerName == ControllerName {
				// The class's parameters cannot be used: its Gateways'
				// Envoys stay as they were.
				b.res.Provision = append(b.res.Provision, Provision{Gateway: gw, Class: gc.Name, Keep: true})
			}
			continue
		}
		gen := gw.Generation
		gs := &gatewayState{obj: gw, status: &gwapiv1.GatewayStatus{}, out: &Gateway{Key: key, Secrets: map[types.NamespacedName]Certificate{}}}
		b.gws[key] = gs
		byPort := map[gwapiv1.PortNumber][]*listenerState{}
		for _, l := range gw.Spec.Listeners {
			ls := b.listener(gs, l)
			gs.listeners = append(gs.listeners, ls)
			byPort[l.Port] = append(byPort[l.Port], ls)
		}
		conflicts(byPort, gen)
		valid, invalid := 0, 0
		for _, ls := range gs.listeners {
			if ls.valid {
				valid++
			} else {
				invalid++
			}
		}
		params, paramsErr := b.gatewayParameters(gw)
		var accepted metav1.Condition
		switch {
		case paramsErr != nil:
			accepted = cond(string(gwapiv1.GatewayConditionAccepted), string(gwapiv1.GatewayReasonInvalidParameters), false, gen, paramsErr.Error())
			valid = 0
		case len(gw.Spec.Addresses) > 0:
			accepted = cond(string(gwapiv1.GatewayConditionAccepted), string(gwapiv1.GatewayReasonUnsupportedAddress), false, gen,
				"eastwest does not assign addresses: the Service in front of the Gateway's Envoy does; leave spec.addresses empty")
			valid = 0
		case invalid > 0:
			accepted = cond(string(gwapiv1.GatewayConditionAccepted), string(gwapiv1.GatewayReasonListenersNotValid), valid > 0, gen,
				fmt.Sprintf("%d of %d listeners are not valid", invalid, len(gs.listeners)))
		default:
			accepted = cond(string(gwapiv1.GatewayConditionAccepted), string(gwapiv1.GatewayReasonAccepted), true, gen, "")
		}
		programmed := cond(string(gwapiv1.GatewayConditionProgrammed), string(gwapiv1.GatewayReasonProgrammed), true, gen,
			"served over xDS to Envoys whose node declares role gateway-api and gateway "+key.String())
		if valid == 0 {
			programmed = cond(string(gwapiv1.GatewayConditionProgrammed), string(gwapiv1.GatewayReasonInvalid), false, gen, "no valid listener")
			refused := paramsErr != nil || len(gw.Spec.Addresses) > 0
			for _, ls := range gs.listeners {
				ls.valid = false
				ls.attachable = ls.attachable && !refused
			}
		}
		gs.status.Conditions = []metav1.Condition{accepted, programmed}
		switch {
		case paramsErr != nil:
			// Its parameters cannot be used: its Envoys stay as they were.
			b.res.Provision = append(b.res.Provision, Provision{Gateway: gw, Class: string(gw.Spec.GatewayClassName), Keep: true})
		case accepted.Status == metav1.ConditionTrue:
			// Deployed while accepted, whether or not its listeners are
			// valid now: its Service, and so its address, stays.
			b.res.Provision = append(b.res.Provision, Provision{Gateway: gw, Class: string(gw.Spec.GatewayClassName), Params: params})
		}
		var why string
		gs.status.Addresses, why = b.addresses(key)
		if valid > 0 && why != "" {
			reason := string(gwapiv1.GatewayReasonAddressNotAssigned)
			if len(gs.status.Addresses) > 0 {
				reason = string(gwapiv1.GatewayReasonPending)
			}
			gs.status.Conditions[1] = cond(string(gwapiv1.GatewayConditionProgrammed), reason, false, gen, why)
		}
	}
}

// addresses are a Gateway's status.addresses: those of the Services in
// its namespace labelled with its name (GEP-1762; the Service in front of
// its Envoys, as provisioning and deploy/kubernetes/gateway-envoy.yaml
// make it): a LoadBalancer Service's load balancer ingress IPs and host
// names (none until the load balancer assigns them: its cluster IP is not
// where clients outside reach it), another type's cluster IPs. eastwest
// assigns no address itself. why says what keeps the Gateway from being
// Programmed, empty when nothing does: no address yet, or no ready
// endpoint behind its Services (its Envoys are not Ready: they turn Ready
// once served). The Services are the Gateway's refs, so that a change of
// their readiness builds the member again.
func (b *builder) addresses(gw types.NamespacedName) (out []gwapiv1.GatewayStatusAddress, why string) {
	ip, host := gwapiv1.IPAddressType, gwapiv1.HostnameAddressType
	var names []string
	ready := false
	for _, key := range sortedKeys(b.in.Services) {
		svc := b.in.Services[key]
		if key.Namespace != gw.Namespace || svc.Labels[gwapiv1.GatewayNameLabelKey] != gw.Name {
			continue
		}
		names = append(names, key.Name)
		sk := mcs.ServiceKey{Namespace: key.Namespace, Name: key.Name}
		b.res.Refs[sk], b.res.Fronts[sk] = true, true
		ready = ready || b.look.Ready(sk)
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			for _, in := range svc.Status.LoadBalancer.Ingress {
				if in.IP != "" {
					out = append(out, gwapiv1.GatewayStatusAddress{Type: &ip, Value: in.IP})
				}
				if in.Hostname != "" {
					out = append(out, gwapiv1.GatewayStatusAddress{Type: &host, Value: in.Hostname})
				}
			}
			continue
		}
		for _, c := range svc.Spec.ClusterIPs {
			if c != "" && c != corev1.ClusterIPNone {
				out = append(out, gwapiv1.GatewayStatusAddress{Type: &ip, Value: c})
			}
		}
	}
	switch {
	case len(names) == 0:
		return nil, fmt.Sprintf("no Service in %s labelled %s=%s in front of its Envoys yet (provisioning makes it; Envoys deployed by hand need one)", gw.Namespace, gwapiv1.GatewayNameLabelKey, gw.Name)
	case len(out) == 0:
		return nil, fmt.Sprintf("Service %s/%s has no address yet (a LoadBalancer's is its load balancer's)", gw.Namespace, strings.Join(names, ", "))
	case !ready:
		return out, fmt.Sprintf("waiting for the Gateway's Envoys: no ready endpoint behind Service %s/%s", gw.Namespace, strings.Join(names, ", "))
	}
	return out, ""
}

// listener validates one listener of a Gateway.
func (b *builder) listener(gs *gatewayState, l gwapiv1.Listener) *listenerState {
	gw := gs.obj
	gen := gw.Generation
	ls := &listenerState{spec: l, valid: true, kinds: map[string]bool{}, hosts: map[string]*Host{},
		status: &gwapiv1.ListenerStatus{Name: l.Name, SupportedKinds: []gwapiv1.RouteGroupKind{}}}
	ls.out = &Listener{Name: string(l.Name)}
	if l.Hostname != nil {
		ls.out.Hostname = string(*l.Hostname)
	}
	accepted := cond(string(gwapiv1.ListenerConditionAccepted), string(gwapiv1.ListenerReasonAccepted), true, gen, "")
	resolved := cond(string(gwapiv1.ListenerConditionResolvedRefs), string(gwapiv1.ListenerReasonResolvedRefs), true, gen, "")
	fail := func(c *metav1.Condition, reason, msg string) {
		if c.Status == metav1.ConditionTrue {
			*c = cond(c.Type, reason, false, gen, msg)
		}
		ls.valid = false
	}
	switch l.Protocol {
	case gwapiv1.HTTPProtocolType, gwapiv1.HTTPSProtocolType:
	default:
		fail(&accepted, string(gwapiv1.ListenerReasonUnsupportedProtocol), fmt.Sprintf("protocol %s is not supported; eastwest serves HTTP and HTTPS", l.Protocol))
	}
	// Route kinds: the listener's allowedRoutes.kinds, or both by default.
	group := gwapiv1.Group(gwapiv1.GroupName)
	var bad []string
	if l.AllowedRoutes != nil && len(l.AllowedRoutes.Kinds) > 0 {
		for _, k := range l.AllowedRoutes.Kinds {
			if (k.Group == nil || *k.Group == group) && slices.Contains(routeKinds, string(k.Kind)) {
				ls.kinds[string(k.Kind)] = true
			} else {
				g := string(gwapiv1.GroupName)
				if k.Group != nil {
					g = string(*k.Group)
				}
				bad = append(bad, g+"/"+string(k.Kind))
			}
		}
	} else if accepted.Status == metav1.ConditionTrue {
		for _, k := range routeKinds {
			ls.kinds[k] = true
		}
	}
	for _, k := range routeKinds {
		if ls.kinds[k] {
			ls.status.SupportedKinds = append(ls.status.SupportedKinds, gwapiv1.RouteGroupKind{Group: &group, Kind: gwapiv1.Kind(k)})
		}
	}
	if len(bad) > 0 {
		resolved = cond(resolved.Type, string(gwapiv1.ListenerReasonInvalidRouteKinds), false, gen, "unsupported route kinds: "+strings.Join(bad, ", "))
		if len(ls.kinds) == 0 {
			ls.valid = false
		}
	}
	if l.Protocol == gwapiv1.HTTPSProtocolType {
		switch {
		case l.TLS == nil || len(l.TLS.CertificateRefs) == 0:
			fail(&resolved, string(gwapiv1.ListenerReasonInvalidCertificateRef), "an HTTPS listener needs tls.certificateRefs")
		case l.TLS.Mode != nil && *l.TLS.Mode != gwapiv1.TLSModeTerminate:
			fail(&accepted, string(gwapiv1.ListenerReasonUnsupportedValue), "tls.mode must be Terminate for HTTPS")
		default:
			for _, ref := range l.TLS.CertificateRefs {
				key, reason, err := b.certificate(gs, ref)
				if err != nil {
					fail(&resolved, reason, err.Error())
					continue
				}
				ls.out.Certificates = append(ls.out.Certificates, key)
			}
			if len(ls.out.Certificates) == 0 {
				ls.valid = false
			}
		}
	}
	ls.status.Conditions = []metav1.Condition{accepted, resolved}
	ls.attachable = accepted.Status == metav1.ConditionTrue && len(ls.kinds) > 0
	return ls
}

// certificate resolves a listener's certificateRef to a valid TLS Secret.
func (b *builder) certificate(gs *gatewayState, ref gwapiv1.SecretObjectReference) (types.NamespacedName, string, error) {
	gw := gs.obj
	key := types.NamespacedName{Namespace: gw.Namespace, Name: string(ref.Name)}
	if ref.Namespace != nil {
		key.Namespace = string(*ref.Namespace)
	}
	if deref(ref.Group) != "" || (ref.Kind != nil && *ref.Kind != kindSecret) {
		return key, string(gwapiv1.ListenerReasonInvalidCertificateRef), fmt.Errorf("certificateRef %s/%s %s: only core Secrets are supported", deref(ref.Group), deref(ref.Kind), ref.Name)
	}
	if key.Namespace != gw.Namespace && !b.granted(gwapiv1.GroupName, kindGateway, gw.Namespace, "", kindSecret, key) {
		return key, string(gwapiv1.ListenerReasonRefNotPermitted), fmt.Errorf("certificateRef Secret %s: no ReferenceGrant in %s allows Gateways from %s", key, key.Namespace, gw.Namespace)
	}
	s := b.in.Secrets[key]
	if s == nil {
		return key, string(gwapiv1.ListenerReasonInvalidCertificateRef), fmt.Errorf("certificateRef Secret %s: not found (or not of type kubernetes.io/tls)", key)
	}
	if _, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err != nil {
		// The error never quotes key material.
		return key, string(gwapiv1.ListenerReasonInvalidCertificateRef), fmt.Errorf("certificateRef Secret %s: not a valid certificate and key: %w", key, err)
	}
	gs.out.Secrets[key] = Certificate{Chain: s.Data[corev1.TLSCertKey], Key: s.Data[corev1.TLSPrivateKeyKey]}
	return key, "", nil
}

// conflicts marks listeners sharing a port with another protocol, or the
// same protocol and hostname: neither is programmed (Conflicted).
func conflicts(byPort map[gwapiv1.PortNumber][]*listenerState, gen int64) {
	for _, ls := range byPort {
		for i, l := range ls {
			reason := ""
			for j, o := range ls {
				if i == j {
					continue
				}
				switch {
				case l.spec.Protocol != o.spec.Protocol:
					reason = string(gwapiv1.ListenerReasonProtocolConflict)
				case deref(l.spec.Hostname) == deref(o.spec.Hostname) && reason == "":
					reason = string(gwapiv1.ListenerReasonHostnameConflict)
				}
			}
			c := cond(string(gwapiv1.ListenerConditionConflicted), string(gwapiv1.ListenerReasonNoConflicts), false, gen, "")
			if reason != "" {
				c = cond(c.Type, reason, true, gen, "another listener on port "+fmt.Sprint(l.spec.Port)+" conflicts with this one")
				l.valid, l.attachable = false, false
			}
			l.status.Conditions = append(l.status.Conditions, c)
		}
	}
}

// granted reports whether a ReferenceGrant in to's namespace lets objects
// of (fromGroup, fromKind) in fromNS refer to (toGroup, toKind) to.
func (b *builder) granted(fromGroup, fromKind, fromNS, toGroup, toKind string, to types.NamespacedName) bool {
	for _, g := range b.in.Grants {
		if g.Namespace != to.Namespace {
			continue
		}
		from := slices.ContainsFunc(g.Spec.From, func(f gwapiv1.ReferenceGrantFrom) bool {
			return string(f.Group) == fromGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS
		})
		if !from {
			continue
		}
		if slices.ContainsFunc(g.Spec.To, func(t gwapiv1.ReferenceGrantTo) bool {
			return string(t.Group) == toGroup && string(t.Kind) == toKind && (t.Name == nil || string(*t.Name) == to.Name)
		}) {
			return true
		}
	}
	return false
}

// route is a route of either kind, compiled.
type route struct {
	key       RouteKey
	obj       metav1.Object
	parents   []gwapiv1.ParentReference
	hostnames []gwapiv1.Hostname
	rules     []*RouteRule
	// services are the services the route names.
	services map[mcs.ServiceKey]bool
	// refs is the ResolvedRefs condition's failure (reason and messages).
	refReason string
	refErrs   []string
	// invalid lists rules left out or answered 500 (PartiallyInvalid).
	invalid []string
	status  []gwapiv1.RouteParentStatus
}

func (b *builder) routes() {
	var rs []*route
	for _, k := range sortedKeys(b.in.HTTPRoutes) {
		rs = append(rs, b.httpRoute(b.in.HTTPRoutes[k]))
	}
	for _, k := range sortedKeys(b.in.GRPCRoutes) {
		rs = append(rs, b.grpcRoute(b.in.GRPCRoutes[k]))
	}
	for _, r := range rs {
		b.attach(r)
	}
}

// attach binds a route to each of its parents this controller owns and
// records the parent's status.
func (b *builder) attach(r *route) {
	gen := r.obj.GetGeneration()
	for _, p := range r.parents {
		group, kind := string(gwapiv1.GroupName), kindGateway
		if p.Group != nil {
			group = string(*p.Group)
		}
		if p.Kind != nil {
			kind = string(*p.Kind)
		}
		ns := r.key.Namespace
		if p.Namespace != nil {
			ns = string(*p.Namespace)
		}
		var accepted metav1.Condition
		switch {
		case group == gwapiv1.GroupName && kind == kindGateway:
			gs := b.gws[types.NamespacedName{Namespace: ns, Name: string(p.Name)}]
			if gs == nil {
				continue // not a Gateway of ours: its controller reports
			}
			accepted = b.attachGateway(r, p, gs)
		case (group == mcsv1b1.GroupName && kind == kindServiceImport) || (group == "" && kind == kindService):
			accepted = b.attachMesh(r, p, kind, mcs.ServiceKey{Namespace: ns, Name: string(p.Name)})
		default:
			continue
		}
		accepted.ObservedGeneration = gen
		conds := []metav1.Condition{accepted}
		if r.refReason != "" {
			conds = append(conds, cond(string(gwapiv1.RouteConditionResolvedRefs), r.refReason, false, gen, strings.Join(r.refErrs, "; ")))
		} else {
			conds = append(conds, cond(string(gwapiv1.RouteConditionResolvedRefs), string(gwapiv1.RouteReasonResolvedRefs), true, gen, ""))
		}
		if len(r.invalid) > 0 && len(r.rules) > 0 {
			conds = append(conds, cond(string(gwapiv1.RouteConditionPartiallyInvalid), string(gwapiv1.RouteReasonUnsupportedValue), true, gen, strings.Join(r.invalid, "; ")))
		}
		r.status = append(r.status, gwapiv1.RouteParentStatus{ParentRef: p, ControllerName: ControllerName, Conditions: conds})
	}
	if len(r.status) > 0 {
		b.res.RouteRefs[r.key] = slices.SortedFunc(maps.Keys(r.services), mcs.ServiceKey.Compare)
		b.res.Statuses = append(b.res.Statuses, Status{Kind: r.key.Kind, Namespace: r.key.Namespace, Name: r.key.Name, Generation: gen,
			Route: &gwapiv1.RouteStatus{Parents: r.status}})
	}
}

func (b *builder) acceptedRoute(r *route, reason string, ok bool, msg string) metav1.Condition {
	if ok && len(r.rules) == 0 && len(r.invalid) > 0 {
		return cond(string(gwapiv1.RouteConditionAccepted), string(gwapiv1.RouteReasonUnsupportedValue), false, 0, strings.Join(r.invalid, "; "))
	}
	return cond(string(gwapiv1.RouteConditionAccepted), reason, ok, 0, msg)
}

func (b *builder) attachGateway(r *route, p gwapiv1.ParentReference, gs *gatewayState) metav1.Condition {
	var candidates []*listenerState
	for _, ls := range gs.listeners {
		if p.SectionName != nil && *p.SectionName != ls.spec.Name {
			continue
		}
		if p.Port != nil && *p.Port != ls.spec.Port {
			continue
		}
		candidates = append(candidates, ls)
	}
	if len(candidates) == 0 {
		return b.acceptedRoute(r, string(gwapiv1.RouteReasonNoMatchingParent), false, "no listener matches the parentRef's sectionName and port")
	}
	if len(r.rules) == 0 && len(r.invalid) > 0 {
		return b.acceptedRoute(r, "", true, "") // not attached: no rule can be served
	}
	var allowed []*listenerState
	for _, ls := range candidates {
		if ls.attachable && ls.kinds[r.key.Kind] && b.namespaceAllowed(gs.obj, ls.spec, r.key.Namespace) {
			allowed = append(allowed, ls)
		}
	}
	if len(allowed) == 0 {
		return b.acceptedRoute(r, string(gwapiv1.RouteReasonNotAllowedByListeners), false, "no accepted listener of the Gateway allows this route's kind from its namespace")
	}
	attached := false
	for _, ls := range allowed {
		hosts := intersect(ls.out.Hostname, r.hostnames)
		if len(hosts) == 0 {
			continue
		}
		attached = true
		ls.attached++
		for _, h := range hosts {
			host := ls.hosts[h]
			if host == nil {
				host = &Host{Hostname: h}
				ls.hosts[h] = host
			}
			host.Routes = append(host.Routes, r.rules...)
		}
	}
	if !attached {
		return b.acceptedRoute(r, string(gwapiv1.RouteReasonNoMatchingListenerHostname), false, "no listener hostname intersects the route's hostnames")
	}
	return b.acceptedRoute(r, string(gwapiv1.RouteReasonAccepted), true, "")
}

func (b *builder) attachMesh(r *route, p gwapiv1.ParentReference, kind string, svc mcs.ServiceKey) metav1.Condition {
	b.res.Refs[svc] = true
	r.services[svc] = true
	exists := false
	if kind == kindServiceImport {
		exists = b.look.Import(svc) != nil
	} else {
		exists = b.look.Service(svc) != nil
	}
	if !exists {
		return b.acceptedRoute(r, string(gwapiv1.RouteReasonNoMatchingParent), false, kind+" "+svc.String()+" not found")
	}
	port := int32(0)
	if p.Port != nil {
		port = *p.Port
	}
	b.res.Mesh[svc] = append(b.res.Mesh[svc], &MeshRoute{Port: port, Rules: r.rules})
	return b.acceptedRoute(r, string(gwapiv1.RouteReasonAccepted), true, "served to proxyless gRPC clients of "+svc.String())
}

// namespaceAllowed applies a listener's allowedRoutes.namespaces.
func (b *builder) namespaceAllowed(gw *gwapiv1.Gateway, l gwapiv1.Listener, ns string) bool {
	from := gwapiv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if l.AllowedRoutes != nil && l.AllowedRoutes.Namespaces != nil {
		if l.AllowedRoutes.Namespaces.From != nil {
			from = *l.AllowedRoutes.Namespaces.From
		}
		sel = l.AllowedRoutes.Namespaces.Selector
	}
	switch from {
	case gwapiv1.NamespacesFromAll:
		return true
	case gwapiv1.NamespacesFromSame:
		return ns == gw.Namespace
	case gwapiv1.NamespacesFromSelector:
		if sel == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return false
		}
		return s.Matches(labels.Set(b.in.Namespaces[ns]))
	}
	return false
}

// intersect returns the hostnames a route answers on a listener (GEP-
// 917's rules): a listener without hostname takes the route's; a route
// without hostnames takes the listener's; otherwise the names that match
// each other, the more specific of a pair kept. "*" stands for any.
func intersect(listener string, route []gwapiv1.Hostname) []string {
	if len(route) == 0 {
		if listener == "" {
			return []string{"*"}
		}
		return []string{listener}
	}
	var out []string
	for _, h := range route {
		rh := string(h)
		switch {
		case listener == "" || listener == rh:
			out = append(out, rh)
		case wildcardMatch(listener, rh):
			out = append(out, rh)
		case wildcardMatch(rh, listener):
			out = append(out, listener)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// wildcardMatch reports whether host matches pattern "*.suffix" (one or
// more labels in place of the star).
func wildcardMatch(pattern, host string) bool {
	suffix, ok := strings.CutPrefix(pattern, "*")
	if !ok {
		return false
	}
	return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
}

// finish orders every host's rules by precedence, fills the listeners'
// statuses and keeps the Gateways with a valid listener.
func (b *builder) finish() {
	for _, key := range sortedKeys(b.gws) {
		gs := b.gws[key]
		byPort := map[int32]*Port{}
		for _, ls := range gs.listeners {
			ls.status.AttachedRoutes = ls.attached
			gen := gs.obj.Generation
			programmed := cond(string(gwapiv1.ListenerConditionProgrammed), string(gwapiv1.ListenerReasonProgrammed), ls.valid, gen, "")
			if !ls.valid {
				programmed.Reason = string(gwapiv1.ListenerReasonInvalid)
			}
			ls.status.Conditions = append(ls.status.Conditions, programmed)
			gs.status.Listeners = append(gs.status.Listeners, *ls.status)
			if !ls.valid {
				continue
			}
			for _, h := range slices.Sorted(maps.Keys(ls.hosts)) {
				host := ls.hosts[h]
				SortRules(host.Routes)
				ls.out.Hosts = append(ls.out.Hosts, host)
			}
			port := int32(ls.spec.Port)
			if byPort[port] == nil {
				byPort[port] = &Port{Port: port, Protocol: ls.spec.Protocol}
			}
			byPort[port].Listeners = append(byPort[port].Listeners, ls.out)
		}
		for _, p := range slices.Sorted(maps.Keys(byPort)) {
			ls := byPort[p].Listeners
			slices.SortFunc(ls, func(a, b *Listener) int { return cmp.Compare(a.Name, b.Name) })
			gs.out.Ports = append(gs.out.Ports, byPort[p])
		}
		b.res.Statuses = append(b.res.Statuses, Status{Kind: kindGateway, Namespace: key.Namespace, Name: key.Name, Generation: gs.obj.Generation, Gateway: gs.status})
		if len(gs.out.Ports) > 0 {
			b.res.Gateways = append(b.res.Gateways, gs.out)
		}
	}
	for svc, ms := range b.res.Mesh {
		for _, m := range ms {
			SortRules(m.Rules)
		}
		b.res.Mesh[svc] = ms
	}
	slices.SortStableFunc(b.res.Statuses, func(a, b Status) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

// SortRules orders rules by the Gateway API's precedence (HTTPRoute
// "Rules" and GRPCRoute "Rules"): an exact path first; then the longest
// path (prefixes and regular expressions by their length, a prefix before
// a regular expression of the same length); a method match; more header
// matches; more query parameter matches; then the oldest route, the route
// first in namespace/name order, and the rule's own order. Envoy and gRPC
// take the first route that matches, so this order is the precedence.
func SortRules(rs []*RouteRule) {
	rank := func(p PathMatch) int {
		switch p.Type {
		case PathExact:
			return 0
		case PathPrefix:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(rs, func(a, b *RouteRule) int {
		ea, eb := a.Match.Path.Type == PathExact, b.Match.Path.Type == PathExact
		if ea != eb {
			if ea {
				return -1
			}
			return 1
		}
		return cmp.Or(
			-cmp.Compare(len(a.Match.Path.Value), len(b.Match.Path.Value)),
			cmp.Compare(rank(a.Match.Path), rank(b.Match.Path)),
			-cmp.Compare(boolInt(a.Match.Method != ""), boolInt(b.Match.Method != "")),
			-cmp.Compare(len(a.Match.Headers), len(b.Match.Headers)),
			-cmp.Compare(len(a.Match.Query), len(b.Match.Query)),
			a.Created.Compare(b.Created),
			cmp.Compare(a.Route.Namespace, b.Route.Namespace),
			cmp.Compare(a.Route.Name, b.Route.Name),
			cmp.Compare(a.Route.Kind, b.Route.Kind),
			cmp.Compare(a.Rule, b.Rule),
		)
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func sortedKeys[V any](m map[types.NamespacedName]V) []types.NamespacedName {
	return slices.SortedFunc(maps.Keys(m), func(a, b types.NamespacedName) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}
