package testkit

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
)

var (
	loopbackMu    sync.Mutex
	loopbackTaken = map[string]bool{}
)

// LoopbackAddr is an address of 127.0.0.0/8 for one user alone (a test
// apiserver, a test's Envoy listeners), not 127.0.0.1, where ports are
// free: the user listens on fixed ports there. Picking a free port on
// 127.0.0.1 and releasing it for another process to bind let a third
// process take it in between (a test apiserver exited so in CI), and
// fixed ports on 127.0.0.1 or every address collide with other tests and
// with `make run-envoy`. Nothing else listens on these addresses; one
// whose ports are in use (another test process's, by a 1 in 16 million
// chance) is skipped.
func LoopbackAddr(ports ...int) (string, error) {
	loopbackMu.Lock()
	defer loopbackMu.Unlock()
	for range 100 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		addr := fmt.Sprintf("127.%d.%d.%d", 1+int(b[0])%254, b[1], 1+int(b[2])%254)
		if loopbackTaken[addr] {
			continue
		}
		free := true
		for _, p := range ports {
			l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(p)))
			if err != nil {
				free = false
				break
			}
			_ = l.Close()
		}
		if free {
			loopbackTaken[addr] = true
			return addr, nil
		}
	}
	return "", errors.New("no free loopback address")
}

// Loopback is LoopbackAddr for a test: it fails the test when there is
// none.
func Loopback(t testing.TB, ports ...int) string {
	t.Helper()
	addr, err := LoopbackAddr(ports...)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
