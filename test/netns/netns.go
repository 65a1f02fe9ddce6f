package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NS is a network namespace of the test's.
type NS struct {
	Name string
	// HostIP is the test's end of the veth pair, NSIP the namespace's.
	HostIP, NSIP string
}

var subnet atomic.Uint32

// New creates a namespace joined to the test's by a veth pair on a /30 of
// 10.213.0.0/16, with its loopback up. It fails the test (not skips) when
// the machine cannot: the tests that need it run as root in CI.
func New(t testing.TB) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network namespaces need root (CI runs as root)")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	// The host's end of the veth is in the namespace every test process
	// shares: two processes giving it the same address would send one
	// test's traffic into the other's namespace (a cluster's apiserver
	// answering with another test's certificate: TestTwoClustersFlat
	// failed so, now and then, in make test). The subnet is chosen and
	// its address added under a machine-wide lock, skipping the addresses
	// already on the host.
	release, err := Exclusive(subnetLock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	used := hostAddresses(t)
	var ns *NS
	for range 1 << 14 {
		n := subnet.Add(1) + uint32(os.Getpid()%256)*64 //nolint:gosec // small numbers
		hostIP, nsIP := fmt.Sprintf("10.213.%d.%d", n/64%256, n%64*4+1), fmt.Sprintf("10.213.%d.%d", n/64%256, n%64*4+2)
		if !used[hostIP] && !used[nsIP] {
			ns = &NS{Name: "ewt-" + id, HostIP: hostIP, NSIP: nsIP}
			break
		}
	}
	if ns == nil {
		t.Fatal("no free /30 left in 10.213.0.0/16")
	}
	host, peer := "ewh"+id, "ewp"+id
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", ns.Name).Run() //nolint:gosec // the test's own names
		_ = exec.Command("ip", "link", "del", host).Run()     //nolint:gosec // the test's own names
	})
	for _, args := range [][]string{
		{"netns", "add", ns.Name},
		{"link", "add", host, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", ns.Name},
		{"addr", "add", ns.HostIP + "/30", "dev", host},
		{"link", "set", host, "up"},
		{"-n", ns.Name, "addr", "add", ns.NSIP + "/30", "dev", peer},
		{"-n", ns.Name, "link", "set", peer, "up"},
		{"-n", ns.Name, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil { //nolint:gosec // fixed commands with the test's names
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return ns
}

// subnetLock is the lock file under which a namespace's host address is
// chosen and added.
const subnetLock = "/run/eastwest-test-netns.lock"

// Exclusive takes a machine-wide lock (flock on the file at path, made
// when missing) and returns its release: for what test processes share,
// such as the host's addresses and routes. When another process holds it,
// waiting (if set) is called before the wait. A process that dies holding
// it releases it with its file descriptors.
func Exclusive(path string, waiting func()) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600) //nolint:gosec // the harness's lock files
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd()) //nolint:gosec // a file descriptor fits an int
	err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		if waiting != nil {
			waiting()
		}
		err = unix.Flock(fd, unix.LOCK_EX)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}

// hostAddresses are the IP addresses on the test process's interfaces.
func hostAddresses(t testing.TB) map[string]bool {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			out[ipn.IP.String()] = true
		}
	}
	return out
}

// Link joins the namespace to another by a veth pair of their own on a
// /30 of 10.215.0.0/16 and routes the prefixes given (the other's pod
// addresses) through it: an Envoy's namespace reaching its pods'
// namespace, as a pod reaches other pods. It returns both ends' IPs.
func (ns *NS) Link(t testing.TB, other *NS, routes ...string) (mine, theirs string) {
	t.Helper()
	n := subnet.Add(1) + uint32(os.Getpid()%256)*64 //nolint:gosec // small numbers
	mine, theirs = fmt.Sprintf("10.215.%d.%d", n/64%256, n%64*4+1), fmt.Sprintf("10.215.%d.%d", n/64%256, n%64*4+2)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	a, z := "ewa"+hex.EncodeToString(b), "ewz"+hex.EncodeToString(b)
	cmds := [][]string{
		{"-n", ns.Name, "link", "add", a, "type", "veth", "peer", "name", z, "netns", other.Name},
		{"-n", ns.Name, "addr", "add", mine + "/30", "dev", a},
		{"-n", ns.Name, "link", "set", a, "up"},
		{"-n", other.Name, "addr", "add", theirs + "/30", "dev", z},
		{"-n", other.Name, "link", "set", z, "up"},
	}
	for _, r := range routes {
		cmds = append(cmds, []string{"-n", ns.Name, "route", "add", r, "via", theirs})
	}
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil { //nolint:gosec // fixed commands with the test's names
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return mine, theirs
}

// AddAddr gives the namespace's loopback an address (a /32), which only
// the namespace reaches: a pod's IP.
func (ns *NS) AddAddr(t testing.TB, ip string) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", ns.Name, "addr", "add", ip+"/32", "dev", "lo").CombinedOutput(); err != nil { //nolint:gosec // the test's names
		t.Fatalf("ip addr add %s in %s: %v: %s", ip, ns.Name, err, out)
	}
}

// Listen opens a TCP listener inside the namespace, from the test
// process: the socket belongs to the namespace it was made in.
func (ns *NS) Listen(addr string) (net.Listener, error) {
	var l net.Listener
	err := ns.do(func() (err error) { l, err = net.Listen("tcp", addr); return err })
	return l, err
}

// Dial opens a TCP connection from inside the namespace, from the test
// process (a client in the namespace's network).
func (ns *NS) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.do(func() (err error) { c, err = net.DialTimeout("tcp", addr, timeout); return err })
	return c, err
}

// Route routes a prefix through a next hop inside the namespace.
func (ns *NS) Route(t testing.TB, prefix, via string) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", ns.Name, "route", "add", prefix, "via", via).CombinedOutput(); err != nil { //nolint:gosec // the test's names
		t.Fatalf("ip route add %s via %s in %s: %v: %s", prefix, via, ns.Name, err, out)
	}
}

// do runs fn inside the namespace, on a goroutine locked to its thread;
// if the thread cannot return to the test's namespace, the goroutine ends
// still locked and the runtime discards the thread. Sockets fn makes stay
// in the namespace.
func (ns *NS) do(fn func() error) error {
	out := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			out <- err
			runtime.UnlockOSThread()
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			out <- err
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil { //nolint:gosec // a file descriptor fits an int
			out <- fmt.Errorf("enter %s: %w", ns.Name, err)
			runtime.UnlockOSThread()
			return
		}
		out <- fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil { //nolint:gosec // a file descriptor fits an int
			runtime.UnlockOSThread()
		}
	}()
	return <-out
}

// Hosts gives the commands run inside the namespace (Command) an
// /etc/hosts of these lines (ip netns exec bind-mounts /etc/netns/<name>/
// over /etc): host names that only the namespace resolves.
func (ns *NS) Hosts(t testing.TB, lines ...string) {
	t.Helper()
	dir := "/etc/netns/" + ns.Name
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // a directory ip netns reads
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(dir+"/hosts", []byte("127.0.0.1 localhost\n"+strings.Join(lines, "\n")+"\n"), 0o644); err != nil { //nolint:gosec // a hosts file is world-readable
		t.Fatal(err)
	}
}

// Command runs a command inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...) //nolint:gosec // the test's own command
}

// WAN is a network of the test's own that namespaces join as machines
// join a wide-area network: a bridge in a namespace of its own, on a /24
// of 10.216.0.0/16.
type WAN struct {
	ns     *NS
	prefix string
	next   int
	ports  map[*NS]string
}

// Namespace is the name of the WAN's own namespace (its bridge).
func (w *WAN) Namespace() string { return w.ns.Name }

// NewWAN creates a WAN.
func NewWAN(t testing.TB) *WAN {
	t.Helper()
	ns := New(t)
	n := subnet.Add(1) + uint32(os.Getpid()%256) //nolint:gosec // small numbers
	w := &WAN{ns: ns, prefix: fmt.Sprintf("10.216.%d.", n%256), next: 1, ports: map[*NS]string{}}
	if out, err := exec.Command("ip", "-n", ns.Name, "link", "add", "br0", "type", "bridge").CombinedOutput(); err != nil { //nolint:gosec // the test's names
		t.Fatalf("ip link add br0: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "-n", ns.Name, "link", "set", "br0", "up").CombinedOutput(); err != nil { //nolint:gosec // the test's names
		t.Fatalf("ip link set br0 up: %v: %s", err, out)
	}
	return w
}

// Join gives a namespace a leg on the WAN and returns its WAN address.
func (w *WAN) Join(t testing.TB, ns *NS) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	leg, port := "eww"+id, "ewb"+id
	addr := fmt.Sprintf("%s%d", w.prefix, w.next)
	w.next++
	for _, args := range [][]string{
		{"-n", ns.Name, "link", "add", leg, "type", "veth", "peer", "name", port, "netns", w.ns.Name},
		{"-n", ns.Name, "addr", "add", addr + "/24", "dev", leg},
		{"-n", ns.Name, "link", "set", leg, "up"},
		{"-n", w.ns.Name, "link", "set", port, "master", "br0"},
		{"-n", w.ns.Name, "link", "set", port, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil { //nolint:gosec // fixed commands with the test's names
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	w.ports[ns] = port
	return addr
}

// Cut takes a namespace's leg off the WAN (up false) or puts it back: its
// packets are dropped, as when a site's link fails.
func (w *WAN) Cut(t testing.TB, ns *NS, cut bool) {
	t.Helper()
	state := "up"
	if cut {
		state = "down"
	}
	if out, err := exec.Command("ip", "-n", w.ns.Name, "link", "set", w.ports[ns], state).CombinedOutput(); err != nil { //nolint:gosec // the test's names
		t.Fatalf("ip link set %s %s: %v: %s", w.ports[ns], state, err, out)
	}
}
