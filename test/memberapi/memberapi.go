// Package memberapi simulates many member clusters' Kubernetes APIs in one
// process, for measuring eastwest at a scale real apiservers cannot reach
// on one machine (issue 29: 250 and 500 members). Each member speaks the
// Kubernetes API over HTTPS at https://127.0.0.1:PORT/members/NAME, so that
// eastwest's real clients, informers and write-back run against it
// unchanged: discovery of the kinds eastwest reads and writes, list,
// watch (resource versions, resume, bookmarks, the initial events of a
// watch list, 410 Gone for a version too old), get, create, update,
// status updates and delete, JSON and protobuf (requests, and answers for
// the built-in kinds to clients that ask for it, as the apiserver gives
// them), label and field selectors, conflicts on stale resource versions.
//
// It behaves as the test harness's real apiservers do (test/kube: no
// controller manager), which TestSameEventsAsARealAPIServer checks: a
// deleted namespace stays Terminating, nothing is garbage collected, a
// Service gets a cluster IP. Correctness tests use real apiservers; this
// one is for scale alone. A benchmark may also change a member's objects
// directly (direct.go: no HTTP, the same store and watch events) and cut
// a member off.
//
// What it does not do: paging (a list is answered whole), admission,
// RBAC (every request is the admin's), v1alpha1 ServiceExports (it
// serves v1beta1 only).
package memberapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Resource is one kind a member serves.
type Resource struct {
	GVR        schema.GroupVersionResource
	Kind       string
	Namespaced bool
	// Status: updates of the resource keep the status, updates of its
	// status subresource keep the rest.
	Status bool
	// Generation: metadata.generation counts the spec's changes (custom
	// resources).
	Generation bool
}

// Resources are the kinds every member serves: what eastwest reads and
// writes.
var Resources = []Resource{
	{GVR: schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, Kind: "Namespace", Status: true},
	{GVR: schema.GroupVersionResource{Version: "v1", Resource: "services"}, Kind: "Service", Namespaced: true, Status: true},
	{GVR: schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, Kind: "Secret", Namespaced: true},
	{GVR: schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}, Kind: "EndpointSlice", Namespaced: true},
	{GVR: schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1beta1", Resource: "serviceexports"}, Kind: "ServiceExport", Namespaced: true, Status: true, Generation: true},
	{GVR: schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1beta1", Resource: "serviceimports"}, Kind: "ServiceImport", Namespaced: true, Status: true, Generation: true},
	{GVR: schema.GroupVersionResource{Group: "about.k8s.io", Version: "v1beta1", Resource: "clusterproperties"}, Kind: "ClusterProperty", Generation: true},
}

// Server serves many members' APIs over one HTTPS listener.
type Server struct {
	srv *httptest.Server

	mu      sync.Mutex
	members map[string]*Member
}

// Start serves the members named (more can be added) until Close.
func Start(names ...string) *Server {
	s := &Server{members: map[string]*Member{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	for _, n := range names {
		s.Add(n)
	}
	return s
}

// Close stops the server and ends every watch.
func (s *Server) Close() {
	s.mu.Lock()
	for _, m := range s.members {
		m.closeWatches()
	}
	s.mu.Unlock()
	s.srv.Close()
}

// Add makes a member (its API empty) and returns it.
func (s *Server) Add(name string) *Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.members[name]; ok {
		return m
	}
	m := newMember(name)
	s.members[name] = m
	return m
}

// Member returns a member by name.
func (s *Server) Member(name string) *Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members[name]
}

// Config is a rest.Config of a member (the admin's: no RBAC here).
func (s *Server) Config(name string) *rest.Config {
	return &rest.Config{
		Host:            s.srv.URL + "/members/" + name,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.caPEM()},
		BearerToken:     "simulated",
	}
}

// WriteKubeconfigs writes one kubeconfig per member named into dir, each
// file named after its member, as xds serve --kubeconfig-dir reads them.
func (s *Server) WriteKubeconfigs(dir string, names ...string) error {
	for _, n := range names {
		cfg := s.Config(n)
		kc := clientcmdapi.NewConfig()
		kc.Clusters[n] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
		kc.AuthInfos[n] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
		kc.Contexts[n] = &clientcmdapi.Context{Cluster: n, AuthInfo: n}
		kc.CurrentContext = n
		b, err := clientcmd.Write(*kc)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, n+".yaml"), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) caPEM() []byte {
	return pemCert(s.srv.Certificate().Raw)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/members/")
	if !ok {
		writeStatus(w, notFound("", "", r.URL.Path))
		return
	}
	name, path, _ := strings.Cut(rest, "/")
	m := s.Member(name)
	if m == nil {
		writeStatus(w, notFound("", "", "member "+name))
		return
	}
	if m.down.Load() {
		m.count("refused")
		writeStatus(w, unavailable(name))
		return
	}
	m.serve(w, r, "/"+path)
}

// Requests counts the requests a member answered, by verb (list, watch,
// get, create, update, delete, discovery).
func (m *Member) Requests() map[string]int64 {
	out := map[string]int64{}
	m.requests.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

func (m *Member) count(verb string) {
	v, _ := m.requests.LoadOrStore(verb, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// object is what the store keeps of one object: its JSON form.
type object = map[string]any

func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

func meta(o object) map[string]any {
	md, _ := o["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		o["metadata"] = md
	}
	return md
}

func str(o map[string]any, k string) string { s, _ := o[k].(string); return s }

// deepCopy copies a JSON object.
func deepCopy(o object) object {
	return (&unstructured.Unstructured{Object: o}).DeepCopy().Object
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("memberapi: %v", err))
	}
	return b
}
