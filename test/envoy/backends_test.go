package envoy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// backend is one pod of a member cluster: an HTTP server (HTTP/1.1 and
// HTTP/2 without TLS) and a gRPC server on 127.0.<member>.<pod>,
// answering with "<cluster>/<pod>".
type backend struct {
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
}

type grpcBackend struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (g grpcBackend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: g.name}, nil
}

// startBackend starts a pod's servers on ip, on the ports given (0: any
// free one), stopped when the test ends.
func startBackend(t *testing.T, name, ip string, httpPort, grpcPort, altPort int) *backend {
	t.Helper()
	b := &backend{Name: name, IP: ip}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	serveHTTP := func(port int) int {
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Protocols: &protocols, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("X-Backend", name)
			_, _ = fmt.Fprintf(w, "%s %s", name, r.Proto)
		})}
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
	l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, grpcPort))
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

// httpClient speaks HTTP/1.1, or HTTP/2 with prior knowledge (h2c).
func httpClient(h2 bool) *http.Client {
	var p http.Protocols
	if h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &p, DisableKeepAlives: true}}
}

// get sends GET http://addr/ with the Host header given and returns the
// status and the backend's answer.
func get(c *http.Client, addr, host string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), err
}
