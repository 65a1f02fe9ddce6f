package envoy

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

// apiPort is the Gateway API listener port of these tests.
const apiPort = 18080

func importRef(name string, weight int) string {
	w := ""
	if weight > 0 {
		w = fmt.Sprintf(", weight: %d", weight)
	}
	return fmt.Sprintf("{group: multicluster.x-k8s.io, kind: ServiceImport, name: %s, port: 80%s}", name, w)
}

// gatewayAPIYAML is a Gateway of class eastwest on apiPort and an
// HTTPRoute exercising what Gateway API routes can say.
func gatewayAPIYAML() string {
	a, b := importRef("a", 0), importRef("b", 0)
	return fixture.GatewayClassYAML + fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: api, namespace: shop, generation: 1}
spec:
  gatewayClassName: eastwest
  listeners:
  - {name: http, port: %d, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: routes, namespace: shop, generation: 1, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: api}]
  hostnames: [api.example.com]
  rules:
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [%[2]s]
  - matches: [{path: {type: PathPrefix, value: /prefix}}]
    backendRefs: [%[3]s]
  - matches: [{path: {type: PathPrefix, value: /match}, headers: [{name: x-version, value: v2}]}]
    backendRefs: [%[3]s]
  - matches: [{path: {type: PathPrefix, value: /match}, queryParams: [{name: variant, value: b}]}]
    backendRefs: [%[3]s]
  - matches: [{path: {type: PathPrefix, value: /match}, method: POST}]
    backendRefs: [%[3]s]
  - matches: [{path: {type: PathPrefix, value: /match}}]
    backendRefs: [%[2]s]
  - matches: [{path: {type: PathPrefix, value: /modify}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: X-Added, value: "yes"}], remove: [X-Remove-Me]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Resp, value: set}]}}
    backendRefs: [%[2]s]
  - matches: [{path: {type: PathPrefix, value: /redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: other.example.com, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /rewrite}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /rewritten}}}]
    backendRefs: [%[2]s]
  - matches: [{path: {type: PathPrefix, value: /mirror}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {group: multicluster.x-k8s.io, kind: ServiceImport, name: m, port: 80}}}]
    backendRefs: [%[2]s]
  - matches: [{path: {type: PathPrefix, value: /split}}]
    backendRefs: [%[4]s, %[5]s]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 300ms}
    backendRefs: [%[2]s]
  - matches: [{path: {type: PathPrefix, value: /try}}]
    timeouts: {request: 5s, backendRequest: 300ms}
    backendRefs: [%[2]s]
  - matches: [{path: {type: PathPrefix, value: /retry}}]
    retry: {attempts: 2, codes: [500]}
    backendRefs: [%[2]s]
  - matches: [{path: {type: PathPrefix, value: /failover}}]
    backendRefs: [%[6]s]
  - matches: [{path: {type: PathPrefix, value: /invalid}}]
    backendRefs: [{name: missing, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /empty}}]
    backendRefs: [%[7]s]
`, apiPort, a, b, importRef("a", 80), importRef("b", 20), importRef("web", 0), importRef("empty", 0))
}

// A Gateway API Gateway in a real Envoy (role gateway-api): each rule's
// matches, filters, weights, timeouts and retries do what the Gateway API
// says, with ServiceImport backends that fail over across members, 500
// for an invalid backend and 503 for one without ready endpoints.
func TestGatewayAPITraffic(t *testing.T) {
	a := envoytest.StartBackend(t, "east/a-0", memberIP(1, 1), 0, 0, -1)
	b := envoytest.StartBackend(t, "east/b-0", memberIP(1, 2), 0, 0, -1)
	m := envoytest.StartBackend(t, "east/m-0", memberIP(1, 3), 0, 0, -1)
	webEast := envoytest.StartBackend(t, "east/web-0", memberIP(1, 4), 0, 0, -1)
	webWest := envoytest.StartBackend(t, "west/web-0", memberIP(2, 4), 0, 0, -1)
	dir := t.TempDir()
	port := func(be *envoytest.Backend) []string { return []string{fmt.Sprintf("http:80:%d", be.HTTPPort)} }
	writeFile(t, filepath.Join(dir, "east", "cluster.yaml"), fixture.ClusterYAML("east"))
	writeFile(t, filepath.Join(dir, "east", "gateway.yaml"), gatewayAPIYAML())
	writeFile(t, filepath.Join(dir, "east", "a.yaml"), fixture.ServiceYAML("shop", "a", port(a), a.IP))
	writeFile(t, filepath.Join(dir, "east", "b.yaml"), fixture.ServiceYAML("shop", "b", port(b), b.IP))
	writeFile(t, filepath.Join(dir, "east", "m.yaml"), fixture.ServiceYAML("shop", "m", port(m), m.IP))
	writeFile(t, filepath.Join(dir, "east", "web.yaml"), fixture.ServiceYAML("shop", "web", port(webEast), webEast.IP))
	writeFile(t, filepath.Join(dir, "east", "empty.yaml"), fixture.ServiceYAML("shop", "empty", port(a), "127.0.1.99!"))
	writeFile(t, filepath.Join(dir, "west", "cluster.yaml"), fixture.ClusterYAML("west"))
	writeFile(t, filepath.Join(dir, "west", "web.yaml"), fixture.ServiceYAML("shop", "web", port(webWest), webWest.IP))

	cfg := controlplane.Config{Dir: dir}
	cfg.Writer.ListenAddress = testkit.Loopback(t, apiPort)
	app := cptest.StartWith(t, cfg)
	v := translate.View{Cluster: "east", Role: translate.RoleGatewayAPI, Gateway: "shop/api"}
	e := envoytest.ForView(t, app, v, "api-envoy", true, nil)
	e.WaitSynced(t, app, "api-envoy", v.String())
	e.CheckAccepted(t, app, v.String())

	c := envoytest.HTTPClient(false)
	url := func(path string) string {
		return fmt.Sprintf("http://%s:%d%s", cfg.Writer.ListenAddress, apiPort, path)
	}
	do := func(method, path string, header http.Header) (*http.Response, string) {
		t.Helper()
		resp, body, err := envoytest.Send(c, method, url(path), "api.example.com", header)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp, body
	}
	tests := map[string]struct {
		method, path string
		header       http.Header
		code         int
		backend      string
	}{
		"exact path":                      {"GET", "/exact", nil, 200, "east/a-0"},
		"exact path does not match more":  {"GET", "/exact/more", nil, 404, ""},
		"path prefix":                     {"GET", "/prefix/x", nil, 200, "east/b-0"},
		"path prefix on segments only":    {"GET", "/prefixes", nil, 404, ""},
		"header match":                    {"GET", "/match", http.Header{"X-Version": {"v2"}}, 200, "east/b-0"},
		"query match":                     {"GET", "/match?variant=b", nil, 200, "east/b-0"},
		"method match":                    {"POST", "/match", nil, 200, "east/b-0"},
		"no match falls to the rule left": {"GET", "/match", nil, 200, "east/a-0"},
		"invalid backend":                 {"GET", "/invalid", nil, 500, ""},
		"backend without ready endpoints": {"GET", "/empty", nil, 503, ""},
		"request timeout":                 {"GET", "/slow", http.Header{"X-Delay": {"2s"}}, 504, ""},
		"per-try timeout":                 {"GET", "/try", http.Header{"X-Delay": {"2s"}}, 504, ""},
		"retry on 500":                    {"GET", "/retry", http.Header{"X-Fail-Once": {"r1"}}, 200, "east/a-0"},
		"no retry without a retry rule":   {"GET", "/exact", http.Header{"X-Fail-Once": {"r2"}}, 500, "east/a-0"},
		"wrong host":                      {"GET", "/exact", nil, 404, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			host := "api.example.com"
			if name == "wrong host" {
				host = "other.example.com"
			}
			resp, body, err := envoytest.Send(c, tc.method, url(tc.path), host, tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.code || resp.Header.Get("X-Backend") != tc.backend {
				t.Errorf("%s %s: %d from %q (%q), want %d from %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("X-Backend"), body, tc.code, tc.backend)
			}
		})
	}

	t.Run("header modifiers", func(t *testing.T) {
		resp, _ := do("GET", "/modify", http.Header{"X-Remove-Me": {"1"}})
		got := a.Requests()[len(a.Requests())-1]
		if got.Header.Get("X-Added") != "yes" || got.Header.Get("X-Remove-Me") != "" || resp.Header.Get("X-Resp") != "set" {
			t.Errorf("backend saw %v; response header X-Resp=%q", got.Header, resp.Header.Get("X-Resp"))
		}
	})
	t.Run("redirect", func(t *testing.T) {
		resp, _ := do("GET", "/redirect/x?q=1", nil)
		if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://other.example.com/redirect/x?q=1" {
			t.Errorf("redirect: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("URL rewrite", func(t *testing.T) {
		do("GET", "/rewrite/x?q=1", nil)
		if got := a.Requests()[len(a.Requests())-1].URI; got != "/rewritten/x?q=1" {
			t.Errorf("backend saw %s, want /rewritten/x?q=1", got)
		}
	})
	t.Run("mirror", func(t *testing.T) {
		before := len(m.Requests())
		resp, _ := do("GET", "/mirror/x", nil)
		if resp.Header.Get("X-Backend") != "east/a-0" {
			t.Errorf("mirrored request answered by %q", resp.Header.Get("X-Backend"))
		}
		waitFor(t, "the mirror's copy", func() (string, error) { return fmt.Sprint(len(m.Requests())), nil },
			func(s string) bool { return s == fmt.Sprint(before+1) })
		if got := m.Requests()[before].URI; got != "/mirror/x" {
			t.Errorf("the mirror saw %s", got)
		}
	})
	t.Run("weighted backends", func(t *testing.T) {
		got := map[string]int{}
		for range 1000 {
			resp, _ := do("GET", "/split", nil)
			got[resp.Header.Get("X-Backend")]++
		}
		t.Logf("80/20 split over 1000 requests: %v", got)
		if a := got["east/a-0"]; a < 750 || a > 850 || got["east/a-0"]+got["east/b-0"] != 1000 {
			t.Errorf("80/20 split gave %v", got)
		}
	})
	t.Run("ServiceImport backend fails over across members", func(t *testing.T) {
		if resp, _ := do("GET", "/failover", nil); resp.Header.Get("X-Backend") != "east/web-0" {
			t.Fatalf("before: answered by %q, want east's own", resp.Header.Get("X-Backend"))
		}
		writeFile(t, filepath.Join(dir, "east", "web.yaml"), fixture.ServiceYAML("shop", "web", port(webEast), webEast.IP+"!"))
		try := func() (string, error) {
			resp, _, err := envoytest.Send(c, "GET", url("/failover"), "api.example.com", nil)
			if err != nil {
				return "", err
			}
			return resp.Header.Get("X-Backend"), nil
		}
		waitFor(t, "failover to west", try, func(s string) bool { return s == "west/web-0" })
		writeFile(t, filepath.Join(dir, "east", "web.yaml"), fixture.ServiceYAML("shop", "web", port(webEast), webEast.IP))
		waitFor(t, "failback to east", try, func(s string) bool { return s == "east/web-0" })
	})
}
