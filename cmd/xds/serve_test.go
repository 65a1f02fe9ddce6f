package main

import (
	"bytes"
	"flag"
	"io"
	"maps"
	runtimedebug "runtime/debug"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/eastwest-dev/eastwest/internal/manifest"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
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
		{[]string{"--tunnel-port", "15080"}, "--tunnel-port and --gateway-port are both 15080"},
		{[]string{"extra"}, `xds serve takes no arguments (got ["extra"])`},
		{[]string{"--listen-address", "localhost"}, `--listen-address "localhost" is not an IP address`},
		{[]string{"--dir", ""}, "say where the ClusterSet is: --dir"},
		{[]string{"--member-network", "east"}, `"east" is not MEMBER=NETWORK`},
		{[]string{"--member-network", "east=a,=b"}, `"=b" is not MEMBER=NETWORK`},
		{[]string{"--member-property", "east=region.topology.k8s.io"}, `"east=region.topology.k8s.io" is not MEMBER=NAME=VALUE`},
		{[]string{"--member-property", "east=Bad/Name=x"}, `"east=Bad/Name=x" is not MEMBER=NAME=VALUE`},
		{[]string{"--operator-properties", "jurisdiction.eastwest.io,topology.kubernetes.io/region"}, `"topology.kubernetes.io/region" is not a ClusterProperty name`},
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

// Members read from Kubernetes cannot declare their own jurisdiction
// unless the operator says so: the default of --operator-properties. A
// --dir folder alone is the operator's own files; an explicit list,
// even empty, wins.
func TestServeOperatorProperties(t *testing.T) {
	for _, tc := range []struct {
		args []string
		kube bool
		want []string
	}{
		{nil, true, []string{"jurisdiction.eastwest.io"}},
		{nil, false, nil},
		{[]string{"--operator-properties", ""}, true, nil},
		{[]string{"--operator-properties", "region.topology.k8s.io, jurisdiction.eastwest.io"}, false, []string{"region.topology.k8s.io", "jurisdiction.eastwest.io"}},
	} {
		fs, a := serveFlags(io.Discard)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		got, err := operatorProperties(fs, *a.operatorProperties, tc.kube)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%v (members from Kubernetes: %v): %v, %v; want %v", tc.args, tc.kube, got, err, tc.want)
		}
	}
	fs, a := serveFlags(io.Discard)
	if err := fs.Parse([]string{"--member-property", "east=jurisdiction.eastwest.io=US,west=jurisdiction.eastwest.io=EU", "--member-property", "east=region.topology.k8s.io=us-east"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{"east": {"jurisdiction.eastwest.io": "US", "region.topology.k8s.io": "us-east"}, "west": {"jurisdiction.eastwest.io": "EU"}}
	if got := a.cfg.Writer.Store.MemberProperties; !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("--member-property gives %v, want %v", got, want)
	}
}

// serve collects at GOGC 50 unless the environment sets GOGC, which wins.
func TestServeGCPercent(t *testing.T) {
	defer runtimedebug.SetGCPercent(runtimedebug.SetGCPercent(100))
	tests := []struct {
		gogc string
		want int
	}{{"", servingGCPercent}, {"80", 100}} // with GOGC set, serve leaves the runtime's own setting alone
	for _, tt := range tests {
		t.Setenv("GOGC", tt.gogc)
		runtimedebug.SetGCPercent(100)
		setGCPercent()
		if got := runtimedebug.SetGCPercent(100); got != tt.want {
			t.Errorf("GOGC=%q: serve collects at %d, want %d", tt.gogc, got, tt.want)
		}
	}
}

// The control plane's container in the shipped manifest and in the
// chart's production render runs `xds serve` and `xds probe` with flags
// they have: a misspelt flag would crash-loop the pod.
func TestShippedDeploymentsUseRealFlags(t *testing.T) {
	for _, file := range []string{"../../deploy/kubernetes/control-plane.yaml", "../../deploy/helm/testdata/production.yaml"} {
		objs, err := manifest.File(file)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, u := range objs {
			if u.GetKind() != "Deployment" || u.GetName() != "eastwest" {
				continue
			}
			found = true
			containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			for _, c := range containers {
				args, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
				if len(args) == 0 || args[0] != "serve" {
					t.Fatalf("%s: args %v do not run xds serve", file, args)
				}
				fs, _ := serveFlags(io.Discard)
				if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
					t.Errorf("%s: xds serve %v: %v (left over %v)", file, args[1:], err, fs.Args())
				}
				for _, probe := range []string{"readinessProbe", "livenessProbe"} {
					cmd, _, _ := unstructured.NestedStringSlice(c.(map[string]any), probe, "exec", "command")
					if len(cmd) < 3 || cmd[0] != "xds" || cmd[1] != "probe" {
						t.Fatalf("%s: %s %v is not xds probe", file, probe, cmd)
					}
					pfs := flag.NewFlagSet("probe", flag.ContinueOnError)
					pfs.SetOutput(io.Discard)
					debugFlags(pfs)
					if err := pfs.Parse(cmd[3:]); err != nil || pfs.NArg() > 0 {
						t.Errorf("%s: %s %v: %v", file, probe, cmd, err)
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: no Deployment eastwest", file)
		}
	}
}

// Serving xDS or the debug endpoint in plaintext beyond loopback is
// allowed but never silent; on loopback, or behind TLS, nothing is said.
func TestServeWarnsOfPlaintextBeyondLoopback(t *testing.T) {
	tests := map[string]struct {
		xds, debug string
		xdsTLS     bool
		want       []string
	}{
		"the defaults, on loopback":     {"127.0.0.1:18000", "127.0.0.1:19000", false, nil},
		"localhost and IPv6 loopback":   {"localhost:18000", "[::1]:19000", false, nil},
		"every interface, plaintext":    {":18000", "0.0.0.0:19000", false, []string{"xDS is served in plaintext on --xds-address :18000", "the debug endpoint is served in plaintext on --debug-address 0.0.0.0:19000"}},
		"xDS behind TLS, debug exposed": {"0.0.0.0:18000", "10.0.0.5:19000", true, []string{"the debug endpoint is served in plaintext on --debug-address 10.0.0.5:19000"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := controlplane.Config{XDSAddress: tc.xds, DebugAddress: tc.debug}
			if tc.xdsTLS {
				cfg.XDSTLS.Cert = "tls.crt"
			}
			got := exposureWarnings(cfg)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("warning %q, want it to start %q", got[i], w)
				}
			}
		})
	}
}
