package envoytest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// Backend is one pod of a member cluster: an HTTP server (HTTP/1.1 and
// HTTP/2 without TLS) and a gRPC server on 127.0.<member>.<pod>,
// answering with "<cluster>/<pod>".
type Backend struct {
	Name     string // cluster/pod
	IP       string
	HTTPPort int
	GRPCPort int
	// AltPort, when set, serves HTTP too (a second service port).
	AltPort int
	// StopHTTP stops the HTTP servers: connections are then refused, as
	// from a pod (or a whole member) that died.
	StopHTTP func()
	httpSrvs []*http.Server

	mu       sync.Mutex
	requests []Seen
	failed   map[string]bool
}

// Seen is a request a backend received.
type Seen struct {
	Method, URI string
	Header      http.Header
	// BodyBytes is the length of the request's body as received.
	BodyBytes int64
}

// Requests returns the requests the backend's HTTP servers received.
func (b *Backend) Requests() []Seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.requests)
}

// handle answers "<cluster>/<pod> <protocol>". A request may ask for a
// delay (X-Delay: a duration) or to fail once (X-Fail-Once: a key: the
// first request with that key gets a 500).
func (b *Backend) handle(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	b.mu.Lock()
	b.requests = append(b.requests, Seen{Method: r.Method, URI: r.URL.RequestURI(), Header: r.Header.Clone(), BodyBytes: n})
	fail := false
	if key := r.Header.Get("X-Fail-Once"); key != "" && !b.failed[key] {
		b.failed[key], fail = true, true
	}
	b.mu.Unlock()
	if d, err := time.ParseDuration(r.Header.Get("X-Delay")); err == nil {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("X-Backend", b.Name)
	if fail {
		http.Error(w, b.Name+" failing once", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = fmt.Fprintf(w, "%s %s", b.Name, r.Proto) //nolint:gosec // a test backend naming itself and the protocol, as text
}

type grpcBackend struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (g grpcBackend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: g.name}, nil
}

// StartBackend starts a pod's servers on ip, on the ports given (0: any
// free one), stopped when the test ends.
func StartBackend(t testing.TB, name, ip string, httpPort, grpcPort, altPort int) *Backend {
	t.Helper()
	return StartBackendWith(t, func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }, name, ip, httpPort, grpcPort, altPort)
}

// StartBackendWith is StartBackend with listeners from listen (a network
// namespace's, say).
func StartBackendWith(t testing.TB, listen func(addr string) (net.Listener, error), name, ip string, httpPort, grpcPort, altPort int) *Backend {
	t.Helper()
	b := &Backend{Name: name, IP: ip, failed: map[string]bool{}}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	serveHTTP := func(port int) int {
		l, err := listen(fmt.Sprintf("%s:%d", ip, port))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Protocols: &protocols, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(b.handle)}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		b.httpSrvs = append(b.httpSrvs, srv)
		return l.Addr().(*net.TCPAddr).Port
	}
	b.StopHTTP = func() {
		for _, srv := range b.httpSrvs {
			_ = srv.Close()
		}
	}
	b.HTTPPort = serveHTTP(httpPort)
	if altPort >= 0 {
		b.AltPort = serveHTTP(altPort)
	}
	l, err := listen(fmt.Sprintf("%s:%d", ip, grpcPort))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(g, grpcBackend{name: name})
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	b.GRPCPort = l.Addr().(*net.TCPAddr).Port
	return b
}

// HTTPClient speaks HTTP/1.1, or HTTP/2 with prior knowledge (h2c).
func HTTPClient(h2 bool) *http.Client {
	var p http.Protocols
	if h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &p, DisableKeepAlives: true},
		// Redirects are for the test to see, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Get sends GET http://addr/ with the Host header given and returns the
// status and the backend's answer.
func Get(c *http.Client, addr, host string) (int, string, error) {
	resp, body, err := Send(c, http.MethodGet, "http://"+addr+"/", host, nil)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, body, nil
}

// Send sends a request and returns the response (body read) and body.
func Send(c *http.Client, method, url, host string, header http.Header) (*http.Response, string, error) {
	return SendBody(c, method, url, host, header, "")
}

// SendBody is Send with a request body.
func SendBody(c *http.Client, method, url, host string, header http.Header, body string) (*http.Response, string, error) {
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rb)
	if err != nil {
		return nil, "", err
	}
	req.Host = host
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	return resp, strings.TrimSpace(string(got)), err
}
