package memberapi

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
)

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(mustJSON(v)) //nolint:gosec // a JSON API answer (Content-Type set), in a test harness
}

func writeStatus(w http.ResponseWriter, e *statusError) { writeJSON(w, int(e.Code), e.Status) }

// request is one parsed API path.
type request struct {
	res         *Resource
	namespace   string
	name        string
	subresource string
}

// route parses /api/v1/... and /apis/GROUP/VERSION/... paths.
func route(path string) (request, *statusError) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var group, version string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		version, parts = parts[1], parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		group, version, parts = parts[1], parts[2], parts[3:]
	default:
		return request{}, notFound("", "", path)
	}
	var r request
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) != 2 {
		// namespaces/NS/RESOURCE[/NAME[/SUB]]; "namespaces/NAME" is the
		// namespace itself.
		r.namespace, parts = parts[1], parts[2:]
	}
	if len(parts) == 0 || len(parts) > 3 {
		return request{}, notFound(group, "", path)
	}
	for i := range Resources {
		res := &Resources[i]
		if res.GVR.Group == group && res.GVR.Version == version && res.GVR.Resource == parts[0] {
			r.res = res
		}
	}
	if r.res == nil {
		return request{}, notFound(group, parts[0], "")
	}
	if len(parts) > 1 {
		r.name = parts[1]
	}
	if len(parts) > 2 {
		r.subresource = parts[2]
		if r.subresource != "status" || !r.res.Status {
			return request{}, notFound(group, parts[0]+"/"+r.subresource, r.name)
		}
	}
	if r.namespace != "" && !r.res.Namespaced {
		return request{}, notFound(group, parts[0], r.name)
	}
	return r, nil
}

func (m *Member) serve(w http.ResponseWriter, r *http.Request, path string) {
	switch {
	case path == "/version":
		m.count("discovery")
		writeJSON(w, 200, map[string]string{"major": "1", "minor": "37", "gitVersion": "v1.37.1-memberapi", "platform": "linux/amd64"})
		return
	case path == "/api" || path == "/apis" || strings.Count(strings.Trim(path, "/"), "/") == 1 && strings.HasPrefix(path, "/api/") ||
		strings.Count(strings.Trim(path, "/"), "/") == 2 && strings.HasPrefix(path, "/apis/"):
		m.count("discovery")
		m.discovery(w, path)
		return
	}
	req, err := route(path)
	if err != nil {
		writeStatus(w, err)
		return
	}
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && req.name == "" && q.Get("watch") == "true":
		m.count("watch")
		m.watch(w, r, req)
	case r.Method == http.MethodGet && req.name == "":
		m.count("list")
		m.list(w, r, req, q)
	case r.Method == http.MethodGet:
		m.count("get")
		m.get(w, r, req)
	case r.Method == http.MethodPost && req.name == "":
		m.count("create")
		m.write(w, r, req, true)
	case r.Method == http.MethodPut && req.name != "":
		m.count("update")
		m.write(w, r, req, false)
	case r.Method == http.MethodDelete && req.name != "":
		m.count("delete")
		m.delete(w, r, req)
	default:
		writeStatus(w, newStatus(405, metav1.StatusReasonMethodNotAllowed, r.Method+" "+path+" is not supported here"))
	}
}

// discovery answers /api, /apis and each group version's resources.
func (m *Member) discovery(w http.ResponseWriter, path string) {
	groups := map[string][]string{}
	for _, r := range Resources {
		if !slices.Contains(groups[r.GVR.Group], r.GVR.Version) {
			groups[r.GVR.Group] = append(groups[r.GVR.Group], r.GVR.Version)
		}
	}
	switch path {
	case "/api":
		writeJSON(w, 200, metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"}})
		return
	case "/apis":
		list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
		for _, g := range slices.Sorted(maps.Keys(groups)) {
			if g == "" {
				continue
			}
			grp := metav1.APIGroup{Name: g}
			for _, v := range groups[g] {
				grp.Versions = append(grp.Versions, metav1.GroupVersionForDiscovery{GroupVersion: g + "/" + v, Version: v})
			}
			grp.PreferredVersion = grp.Versions[0]
			list.Groups = append(list.Groups, grp)
		}
		writeJSON(w, 200, list)
		return
	}
	gv := strings.TrimPrefix(strings.TrimPrefix(path, "/apis/"), "/api/")
	group, version, ok := strings.Cut(gv, "/")
	if !ok {
		group, version = "", gv
	}
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv}
	for _, r := range Resources {
		if r.GVR.Group != group || r.GVR.Version != version {
			continue
		}
		verbs := metav1.Verbs{"create", "delete", "get", "list", "update", "watch"}
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: r.GVR.Resource, Namespaced: r.Namespaced, Kind: r.Kind, Verbs: verbs})
		if r.Status {
			list.APIResources = append(list.APIResources, metav1.APIResource{Name: r.GVR.Resource + "/status", Namespaced: r.Namespaced, Kind: r.Kind, Verbs: metav1.Verbs{"get", "update"}})
		}
	}
	if len(list.APIResources) == 0 {
		writeStatus(w, notFound("", "", path))
		return
	}
	writeJSON(w, 200, list)
}

func apiVersion(r *Resource) string { return r.GVR.GroupVersion().String() }

func (m *Member) list(w http.ResponseWriter, r *http.Request, req request, q map[string][]string) {
	sel, err := parseSelector(req.namespace, q)
	if err != nil {
		writeStatus(w, badRequest(err.Error()))
		return
	}
	m.mu.Lock()
	items := []object{}
	for _, k := range slices.Sorted(maps.Keys(m.objects[req.res.GVR.Resource])) {
		if o := m.objects[req.res.GVR.Resource][k]; sel.matches(o) {
			items = append(items, o)
		}
	}
	rv := m.rv
	m.mu.Unlock()
	// Encoded outside the lock: the stored objects are replaced, never
	// changed, so the list stays of one resource version.
	answer(w, r, req.res, 200, req.res.Kind+"List", map[string]any{"apiVersion": apiVersion(req.res), "kind": req.res.Kind + "List",
		"metadata": map[string]any{"resourceVersion": strconv.FormatInt(rv, 10)}, "items": items})
}

func (m *Member) get(w http.ResponseWriter, r *http.Request, req request) {
	m.mu.Lock()
	o := m.objects[req.res.GVR.Resource][key(req.namespace, req.name)]
	m.mu.Unlock()
	if o == nil {
		writeStatus(w, notFound(req.res.GVR.Group, req.res.GVR.Resource, req.name))
		return
	}
	answer(w, r, req.res, 200, req.res.Kind, o)
}

// decodeBody reads a request's object: JSON, or protobuf for Kubernetes'
// built-in kinds (client-go's protobuf clients send it).
func decodeBody(r *http.Request, res *Resource) (object, *statusError) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return nil, badRequest(err.Error())
	}
	if strings.Contains(r.Header.Get("Content-Type"), "protobuf") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(b, nil, nil)
		if err != nil {
			return nil, badRequest("protobuf body: " + err.Error())
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, badRequest(err.Error())
		}
		u["apiVersion"], u["kind"] = apiVersion(res), res.Kind
		return u, nil
	}
	var o object
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, badRequest("body: " + err.Error())
	}
	o["apiVersion"], o["kind"] = apiVersion(res), res.Kind
	return o, nil
}

// write creates or updates an object (its status, for the status
// subresource).
func (m *Member) write(w http.ResponseWriter, r *http.Request, req request, create bool) {
	o, serr := decodeBody(r, req.res)
	if serr != nil {
		writeStatus(w, serr)
		return
	}
	md := meta(o)
	if req.res.Namespaced {
		if ns := str(md, "namespace"); ns != "" && ns != req.namespace {
			writeStatus(w, badRequest("the namespace of the object does not match the namespace of the request"))
			return
		}
		md["namespace"] = req.namespace
	}
	if !create && str(md, "name") != req.name {
		writeStatus(w, badRequest("the name of the object does not match the name of the request"))
		return
	}
	m.mu.Lock()
	out, serr := m.apply(req, o, create)
	m.mu.Unlock()
	if serr != nil {
		writeStatus(w, serr)
		return
	}
	code := 200
	if create {
		code = 201
	}
	answer(w, r, req.res, code, req.res.Kind, out)
}

// apply stores a create or update; called with m.mu held.
func (m *Member) apply(req request, o object, create bool) (object, *statusError) {
	res := req.res
	md := meta(o)
	name := str(md, "name")
	if name == "" {
		return nil, newStatus(422, metav1.StatusReasonInvalid, res.Kind+": metadata.name: Required value")
	}
	if res.Namespaced {
		if ns := m.objects["namespaces"][key("", req.namespace)]; ns == nil {
			return nil, notFound("", "namespaces", req.namespace)
		} else if create && meta(ns)["deletionTimestamp"] != nil {
			return nil, newStatus(403, metav1.StatusReasonForbidden, fmt.Sprintf("%s %q is forbidden: unable to create new content in namespace %s because it is being terminated", res.GVR.Resource, name, req.namespace))
		}
	}
	store := m.objects[res.GVR.Resource]
	if store == nil {
		store = map[string]object{}
		m.objects[res.GVR.Resource] = store
	}
	k := key(str(md, "namespace"), name)
	old := store[k]
	switch {
	case create && str(md, "resourceVersion") != "":
		return nil, newStatus(422, metav1.StatusReasonInvalid, res.Kind+" "+name+": metadata.resourceVersion: Invalid value: must be empty on create")
	case create && old != nil:
		return nil, alreadyExists(res.GVR.Resource, name)
	case !create && old == nil:
		return nil, notFound(res.GVR.Group, res.GVR.Resource, name)
	case !create:
		if v := str(md, "resourceVersion"); v != "" && v != str(meta(old), "resourceVersion") {
			return nil, conflict(res.GVR.Resource, name, "the object has been modified; please apply your changes to the latest version and try again")
		}
	}
	if create {
		if req.subresource != "" {
			return nil, notFound(res.GVR.Group, res.GVR.Resource, name)
		}
		md["uid"], md["creationTimestamp"] = newUID(), now()
		delete(md, "resourceVersion")
		if res.Generation {
			md["generation"] = int64(1)
		}
		m.defaults(res, o)
	} else {
		// What the request may not change.
		omd := meta(old)
		for _, f := range []string{"uid", "creationTimestamp", "deletionTimestamp", "generation"} {
			if v, ok := omd[f]; ok {
				md[f] = v
			} else {
				delete(md, f)
			}
		}
		switch {
		case req.subresource == "status":
			// Only the status changes.
			st := o["status"]
			o = deepCopy(old)
			o["status"] = st
			md = meta(o)
		case res.Status:
			if st, ok := old["status"]; ok {
				o["status"] = st
			} else {
				delete(o, "status")
			}
		}
		if res.Generation && req.subresource == "" && !reflect.DeepEqual(old["spec"], o["spec"]) {
			g, _ := omd["generation"].(int64)
			if f, ok := omd["generation"].(float64); ok {
				g = int64(f)
			}
			md["generation"] = g + 1
		}
		m.keepService(res, old, o)
		if reflect.DeepEqual(stripRV(old), stripRV(o)) {
			return old, nil // a no-op update changes no resource version
		}
	}
	rv := m.bump()
	setRV(o, rv)
	store[k] = o
	typ := watch.Added
	if !create {
		typ = watch.Modified
	}
	m.record(change{typ: typ, resource: res.GVR.Resource, obj: o, old: old, rv: rv})
	return o, nil
}

func stripRV(o object) object {
	c := deepCopy(o)
	delete(meta(c), "resourceVersion")
	return c
}

// defaults fills what the apiserver fills on create; called with m.mu
// held.
func (m *Member) defaults(res *Resource, o object) {
	switch res.Kind {
	case "Namespace":
		md := meta(o)
		l, _ := md["labels"].(map[string]any)
		if l == nil {
			l = map[string]any{}
		}
		l["kubernetes.io/metadata.name"] = md["name"]
		md["labels"] = l
		o["spec"] = map[string]any{"finalizers": []any{"kubernetes"}}
		o["status"] = map[string]any{"phase": "Active"}
	case "Service":
		spec, _ := o["spec"].(map[string]any)
		if spec == nil {
			spec = map[string]any{}
			o["spec"] = spec
		}
		if str(spec, "type") == "" {
			spec["type"] = "ClusterIP"
		}
		if str(spec, "sessionAffinity") == "" {
			spec["sessionAffinity"] = "None"
		}
		if ports, ok := spec["ports"].([]any); ok {
			for _, p := range ports {
				if pm, ok := p.(map[string]any); ok {
					if pm["protocol"] == nil {
						pm["protocol"] = "TCP"
					}
					if tp := pm["targetPort"]; tp == nil || tp == "" || tp == int64(0) || tp == float64(0) {
						pm["targetPort"] = pm["port"]
					}
				}
			}
		}
		if str(spec, "clusterIP") == "" && str(spec, "type") != "ExternalName" {
			ip := m.nextIP.String()
			m.nextIP = m.nextIP.Next()
			spec["clusterIP"], spec["clusterIPs"] = ip, []any{ip}
		} else if ip := str(spec, "clusterIP"); ip != "" && spec["clusterIPs"] == nil {
			spec["clusterIPs"] = []any{ip}
		}
		if spec["ipFamilies"] == nil {
			spec["ipFamilies"] = []any{"IPv4"}
		}
		if spec["ipFamilyPolicy"] == nil {
			spec["ipFamilyPolicy"] = "SingleStack"
		}
		if spec["internalTrafficPolicy"] == nil {
			spec["internalTrafficPolicy"] = "Cluster"
		}
		o["status"] = map[string]any{"loadBalancer": map[string]any{}}
	}
}

// keepService keeps a Service's allocated cluster IPs through an update
// that leaves them out, as the apiserver does.
func (m *Member) keepService(res *Resource, old, o object) {
	if res.Kind != "Service" {
		return
	}
	os, _ := old["spec"].(map[string]any)
	ns, _ := o["spec"].(map[string]any)
	if os == nil || ns == nil {
		return
	}
	for _, f := range []string{"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "type", "sessionAffinity", "internalTrafficPolicy"} {
		if ns[f] == nil || ns[f] == "" {
			if v, ok := os[f]; ok {
				ns[f] = v
			}
		}
	}
}

func (m *Member) delete(w http.ResponseWriter, r *http.Request, req request) {
	m.mu.Lock()
	store := m.objects[req.res.GVR.Resource]
	k := key(req.namespace, req.name)
	old := store[k]
	if old == nil {
		m.mu.Unlock()
		writeStatus(w, notFound(req.res.GVR.Group, req.res.GVR.Resource, req.name))
		return
	}
	var out object
	if req.res.Kind == "Namespace" {
		// No namespace controller: it stays Terminating, as in the
		// harness's apiservers.
		out = deepCopy(old)
		if meta(out)["deletionTimestamp"] == nil {
			meta(out)["deletionTimestamp"] = now()
			out["status"] = map[string]any{"phase": "Terminating"}
			rv := m.bump()
			setRV(out, rv)
			store[k] = out
			m.record(change{typ: watch.Modified, resource: req.res.GVR.Resource, obj: out, old: old, rv: rv})
		}
	} else {
		delete(store, k)
		out = deepCopy(old)
		rv := m.bump()
		setRV(out, rv)
		m.record(change{typ: watch.Deleted, resource: req.res.GVR.Resource, obj: out, rv: rv})
	}
	m.mu.Unlock()
	answer(w, r, req.res, 200, req.res.Kind, out)
}

// watcher is one watch stream.
type watcher struct {
	resource string
	sel      selector
	ch       chan change
	overflow bool
}

// offer queues a change for the watcher; a watcher that cannot keep up
// is ended (its client watches again), never waited for. Called with
// m.mu held.
func (w *watcher) offer(c change) {
	if w.overflow || c.resource != w.resource {
		return
	}
	select {
	case w.ch <- c:
	default:
		w.overflow = true
		close(w.ch)
	}
}

func (m *Member) closeWatches() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for w := range m.watchers {
		if !w.overflow {
			w.overflow = true
			close(w.ch)
		}
	}
}

// watchEvent is one event of a watch stream as the apiserver writes it.
type watchEvent struct {
	Type   watch.EventType `json:"type"`
	Object any             `json:"object"`
}

// bookmarkEvery is how often an idle watch with bookmarks gets one.
const bookmarkEvery = 5 * time.Second

func (m *Member) watch(w http.ResponseWriter, r *http.Request, req request) {
	q := r.URL.Query()
	sel, err := parseSelector(req.namespace, q)
	if err != nil {
		writeStatus(w, badRequest(err.Error()))
		return
	}
	initial := q.Get("sendInitialEvents") == "true"
	bookmarks := q.Get("allowWatchBookmarks") == "true"
	var from int64
	if v := q.Get("resourceVersion"); v != "" {
		if from, err = strconv.ParseInt(v, 10, 64); err != nil {
			writeStatus(w, badRequest("resourceVersion: "+err.Error()))
			return
		}
	}
	timeout := 30 * time.Minute
	if v := q.Get("timeoutSeconds"); v != "" {
		if s, err := strconv.Atoi(v); err == nil && s > 0 {
			timeout = time.Duration(s) * time.Second
		}
	}
	flusher, _ := w.(http.Flusher)
	wt := &watcher{resource: req.res.GVR.Resource, sel: sel, ch: make(chan change, 4096)}
	proto := protobufFor(r, req.res)
	contentType := "application/json"
	if proto {
		contentType = runtime.ContentTypeProtobuf + ";stream=watch"
	}
	send := func(typ watch.EventType, o object) bool {
		var b []byte
		if proto {
			var err error
			if b, err = watchFrame(req.res, string(typ), o); err != nil {
				return false
			}
		} else {
			b = append(mustJSON(watchEvent{Type: typ, Object: o}), '\n')
		}
		_, err := w.Write(b) //nolint:gosec // a watch stream's frame (Content-Type set), in a test harness
		return err == nil
	}

	m.mu.Lock()
	var backlog []watchEvent
	current := m.rv
	switch {
	case initial || from == 0:
		// The state now, then what follows.
		for _, k := range slices.Sorted(maps.Keys(m.objects[wt.resource])) {
			if o := m.objects[wt.resource][k]; sel.matches(o) {
				backlog = append(backlog, watchEvent{Type: watch.Added, Object: o})
			}
		}
		if initial {
			backlog = append(backlog, watchEvent{Type: watch.Bookmark, Object: bookmark(req.res, current, true)})
		}
	case from < m.oldest:
		m.mu.Unlock()
		// As the apiserver: a watch that starts, and ends at once with
		// an ERROR event saying the version is gone.
		w.Header().Set("Content-Type", contentType)
		e := gone(fmt.Sprintf("too old resource version: %d (%d)", from, m.oldest))
		status, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(&e.Status)
		send(watch.Error, status)
		return
	default:
		for _, c := range m.history {
			if c.rv > from && c.resource == wt.resource {
				if ev, ok := filtered(c, sel); ok {
					backlog = append(backlog, ev)
				}
			}
		}
	}
	m.watchers[wt] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.watchers, wt)
		if !wt.overflow {
			wt.overflow = true
			close(wt.ch)
		}
		m.mu.Unlock()
	}()

	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(200)
	for _, ev := range backlog {
		if !send(ev.Type, ev.Object.(object)) {
			return
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	end := time.After(timeout)
	tick := time.NewTicker(bookmarkEvery)
	defer tick.Stop()
	last := current
	for {
		select {
		case <-r.Context().Done():
			return
		case <-end:
			return
		case <-tick.C:
			if bookmarks {
				m.mu.Lock()
				last = max(last, m.rv)
				m.mu.Unlock()
				if !send(watch.Bookmark, bookmark(req.res, last, false)) {
					return
				}
				if flusher != nil {
					flusher.Flush()
				}
			}
		case c, ok := <-wt.ch:
			if !ok {
				return // fell behind, or the server stops: the client watches again
			}
			last = c.rv
			if ev, ok := filtered(c, sel); ok {
				// Encoded once for every watch that gets the change as
				// it is (a selector may make it another event).
				if ev.Type == c.typ && c.enc != nil {
					b, err := c.enc.frame(req.res, c, proto)
					if err != nil {
						return
					}
					if _, err := w.Write(b); err != nil {
						return
					}
				} else if !send(ev.Type, ev.Object.(object)) {
					return
				}
			}
			if flusher != nil && len(wt.ch) == 0 {
				flusher.Flush()
			}
		}
	}
}

// filtered is a change as a watch with a selector sees it: an object that
// stops matching is deleted for it, one that starts matching added.
func filtered(c change, sel selector) (watchEvent, bool) {
	now, before := sel.matches(c.obj), sel.matches(c.old)
	if c.typ == watch.Modified && c.old == nil {
		before = now // record dropped an old version selectors see alike
	}
	switch {
	case c.typ == watch.Modified && now && !before:
		return watchEvent{Type: watch.Added, Object: c.obj}, true
	case c.typ == watch.Modified && !now && before:
		// As the apiserver: the object as the watch last saw it, at the
		// change's version.
		old := deepCopy(c.old)
		setRV(old, c.rv)
		return watchEvent{Type: watch.Deleted, Object: old}, true
	case now:
		return watchEvent{Type: c.typ, Object: c.obj}, true
	}
	return watchEvent{}, false
}

// bookmark is a BOOKMARK event's object: the kind and a resource version
// (and the end of a watch list's initial events).
func bookmark(res *Resource, rv int64, initialEnd bool) object {
	md := map[string]any{"resourceVersion": strconv.FormatInt(rv, 10)}
	if initialEnd {
		md["annotations"] = map[string]any{metav1.InitialEventsAnnotationKey: "true"}
	}
	return object{"apiVersion": apiVersion(res), "kind": res.Kind, "metadata": md}
}
