package main

import (
	"bytes"
	"strings"
	"testing"
)

// `xds serve` refuses, before starting anything, flag values it cannot
// honour, and says which and why.
func TestServeRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--holdoff", "-1ms"}, "cannot be negative"},
		{[]string{"--holdoff", "50ms", "--max-delay", "10ms"}, "is shorter than --holdoff"},
		{[]string{"--gateway-port", "70000"}, "--gateway-port 70000 is not a port"},
		{[]string{"--tunnel-port", "0"}, "--tunnel-port 0 is not a port"},
		{[]string{"--member-network", "east"}, `"east" is not MEMBER=NETWORK`},
		{[]string{"--member-network", "east=a,=b"}, `"=b" is not MEMBER=NETWORK`},
		{[]string{"--dir", "/no/such/folder"}, "--dir /no/such/folder: stat /no/such/folder: no such file or directory"},
		{[]string{"--dir", "serve_test.go"}, "--dir serve_test.go: not a folder"},
		{[]string{"--kubeconfig-dir", "/no/such/folder"}, "--kubeconfig-dir /no/such/folder: stat"},
	} {
		var stdout, stderr bytes.Buffer
		code := runServe(append([]string{"--dir", "../../examples/clusterset"}, tc.args...), &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("serve %v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
