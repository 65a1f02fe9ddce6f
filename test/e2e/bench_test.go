package e2e

import (
	"sort"
	"testing"
	"time"
)

// BenchmarkFailover measures, with gRPC-Go's xDS client in member a, the
// time from a's endpoints turning not ready in the ClusterSet folder (an
// atomic save) to RPCs answered by b, and back: -benchtime 20x. (The
// folder's file notification, a Scan, the publish and the client's
// update; TestEndToEnd checks that traffic moves, this says how fast.)
func BenchmarkFailover(b *testing.B) {
	a1, a2 := startBackend(b, "a1", "127.0.0.11"), startBackend(b, "a2", "127.0.0.12")
	b1 := startBackend(b, "b1", "127.0.0.21")
	dir := b.TempDir()
	cp := &controlPlane{t: b, dir: dir}
	echoA := func(ready bool) string {
		return docs(service("echo", "grpc:9000"), export("echo"), slices("echo", "grpc", ready, a1, a2))
	}
	cp.write("a/echo.yaml", echoA(true))
	cp.write("b/echo.yaml", docs(service("echo", "grpc:9000"), export("echo"), slices("echo", "grpc", true, b1)))
	cp = startControlPlane(b, dir)
	echo := cp.xdsClient(b, "client-a", "a", "echo.demo.svc.clusterset.local:9000")
	on := func(want string) func() bool {
		return func() bool {
			name, err := call(echo, time.Second)
			return err == nil && name[:1] == want
		}
	}
	eventually(b, 10*time.Second, "a answering", on("a"))
	var over, back []time.Duration
	for b.Loop() {
		cp.write("a/echo.yaml", echoA(false))
		over = append(over, eventually(b, 10*time.Second, "failover to b", on("b")))
		cp.write("a/echo.yaml", echoA(true))
		back = append(back, eventually(b, 10*time.Second, "failback to a", on("a")))
	}
	report(b, "failover", over)
	report(b, "failback", back)
	b.ReportMetric(0, "ns/op")
}

// report reports the median and 99th percentile of lat.
func report(b *testing.B, what string, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	n := len(lat)
	b.ReportMetric(float64(lat[n/2].Microseconds())/1000, what+"-p50-ms")
	b.ReportMetric(float64(lat[min(n-1, n*99/100)].Microseconds())/1000, what+"-p99-ms")
}
