package debug

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/metrics"
)

type fakeState struct {
	snap    *controlplane.Snapshot
	ready   bool
	waiting []string
	healthy error
}

func (f fakeState) Waiting() []string                { return f.waiting }
func (f fakeState) Snapshot() *controlplane.Snapshot { return f.snap }
func (f fakeState) Ready() bool                      { return f.ready }
func (f fakeState) Healthy() error                   { return f.healthy }

// /healthz fails, with the reason, when the control plane is stuck.
func TestHealthzFailsWhenStuck(t *testing.T) {
	c := cache.New(controlplane.NodeView)
	h := New(fakeState{snap: &controlplane.Snapshot{State: &mcs.State{}}, healthy: errors.New("a publish has been owed for 3m0s")},
		c, cache.NewTracker(c, nil, nil), metrics.New())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "owed for 3m0s") {
		t.Errorf("/healthz of a stuck control plane: %d %q", rec.Code, rec.Body.String())
	}
}

// The endpoints answer bad or unknown requests with a status and a reason
// that says what to ask instead, and /readyz names the sources it waits for.
func TestEndpointsRefuseClearly(t *testing.T) {
	c := cache.New(controlplane.NodeView)
	h := New(fakeState{snap: &controlplane.Snapshot{
		State:   &mcs.State{},
		Sources: map[string]bool{"dir:x": false},
	}, waiting: []string{"kubeconfig:east", "kubeconfig:west"}}, c, cache.NewTracker(c, nil, nil), metrics.New())
	tests := map[string]struct {
		path string
		code int
		body string
	}{
		"index":             {"/", 200, "/debug/explain?service=NS/NAME"},
		"readyz waiting":    {"/readyz", 503, "not ready: waiting for the initial sync of kubeconfig:east, kubeconfig:west\n"},
		"healthz":           {"/healthz", 200, "ok"},
		"explain no param":  {"/debug/explain", 400, "service=NAMESPACE/NAME is required"},
		"explain unknown":   {"/debug/explain?service=a/b", 404, "no member cluster exports a/b"},
		"explain node":      {"/debug/explain?service=a/b&node=x", 404, "no member cluster exports a/b"},
		"mcs bad service":   {"/debug/mcs?service=nope", 400, "NAMESPACE/NAME"},
		"dump no node":      {"/debug/config_dump", 400, "node=ID is required"},
		"dump unknown node": {"/debug/config_dump?node=x", 404, `no connected client has node.id "x"`},
		"syncz empty":       {"/debug/syncz", 200, "[]"},
		"refused empty":     {"/debug/refused", 200, "[]"},
		"clusters":          {"/debug/clusters", 200, `"dir:x": false`},
		"metrics":           {"/metrics", 200, "eastwest_xds_clients"},
		"wrong method":      {"POST /debug/syncz", 405, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			method, path := http.MethodGet, tc.path
			if m, p, ok := strings.Cut(tc.path, " "); ok {
				method, path = m, p
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.code || !strings.Contains(string(body), tc.body) {
				t.Errorf("%s: %d %q, want %d containing %q", tc.path, rec.Code, body, tc.code, tc.body)
			}
		})
	}
}
