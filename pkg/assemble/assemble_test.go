package assemble_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/assemble"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/pkg/trust"
)

// inputs lists every file of the golden ClusterSet folders and the demo,
// as "case", member and file paths.
type inputFile struct{ member, path string }

func goldenCases(t *testing.T) map[string][]inputFile {
	t.Helper()
	dirs := testkit.Cases(t, "../../testdata/*.in")
	dirs = append(dirs, "../../examples/clusterset")
	out := map[string][]inputFile{}
	for _, d := range dirs {
		files := testkit.Cases(t, filepath.Join(d, "*", "*.yaml"))
		name := strings.TrimSuffix(filepath.Base(d), ".in")
		for _, f := range files {
			out[name] = append(out[name], inputFile{member: filepath.Base(filepath.Dir(f)), path: f})
		}
	}
	return out
}

// folder is a ClusterSet folder a test fills file by file.
type folder struct {
	t   *testing.T
	dir string
	src *source.Dir
	asm *assemble.Assembler
	// last is the last step's Plan (its State: the merged state now).
	last assemble.Plan
}

// instantDir reads a folder as the server does, but applies removals at
// once: these tests step through changes and compare with a build from
// scratch; the folder's settle time is pkg/source's to test.
func instantDir(dir string) *source.Dir {
	d := source.NewDir(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	d.Settle = 0
	return d
}

func newFolder(t *testing.T) *folder {
	dir := t.TempDir()
	return &folder{t: t, dir: dir, src: instantDir(dir), asm: assemble.New(assemble.Options{KeepViews: true})}
}

func (f *folder) put(in inputFile) {
	f.t.Helper()
	b, err := os.ReadFile(in.path)
	if err != nil {
		f.t.Fatal(err)
	}
	dst := filepath.Join(f.dir, in.member, filepath.Base(in.path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *folder) remove(in inputFile) {
	f.t.Helper()
	if err := os.Remove(filepath.Join(f.dir, in.member, filepath.Base(in.path))); err != nil {
		f.t.Fatal(err)
	}
}

// step scans the folder, applies what changed to the incremental
// assembler and returns its Plan.
func (f *folder) step() assemble.Plan {
	f.t.Helper()
	evs, _, err := f.src.Scan()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, ev := range evs {
		_ = f.asm.Apply(ev) // invalid inputs are reported, as serve does
	}
	f.last = f.asm.Flush()
	return f.last
}

// fromScratch assembles the folder as it is now with a new assembler.
func fromScratch(t *testing.T, dir string) *assemble.Assembler {
	t.Helper()
	evs, _, err := source.NewDir(dir, slog.New(slog.NewTextHandler(io.Discard, nil))).Scan()
	if err != nil {
		t.Fatal(err)
	}
	a := assemble.New(assemble.Options{KeepViews: true})
	for _, ev := range evs {
		_ = a.Apply(ev)
	}
	a.Flush()
	return a
}

// same reports how two assemblers' views differ ("" when they do not).
func same(inc, fresh *assemble.Assembler) string {
	iv, fv := inc.Views(), fresh.Views()
	if !slices.Equal(viewNames(iv), viewNames(fv)) {
		return fmt.Sprintf("views %v, from scratch %v", viewNames(iv), viewNames(fv))
	}
	for _, v := range fv {
		a, b := inc.View(v), fresh.View(v)
		if len(a.Resources) != len(b.Resources) {
			return fmt.Sprintf("%s: %d resources, from scratch %d", v, len(a.Resources), len(b.Resources))
		}
		for i := range a.Resources {
			x, y := a.Resources[i], b.Resources[i]
			if x.Type != y.Type || x.Name != y.Name || !proto.Equal(x.Message, y.Message) {
				return fmt.Sprintf("%s: %s %s differs from scratch's %s %s", v, x.Type, x.Name, y.Type, y.Name)
			}
		}
		if len(a.Invalid) != len(b.Invalid) {
			return fmt.Sprintf("%s: %d invalid, from scratch %d", v, len(a.Invalid), len(b.Invalid))
		}
	}
	return ""
}

func viewNames(vs []translate.View) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.String()
	}
	slices.Sort(out)
	return out
}

// Incremental equals from scratch: every golden input and the demo, built
// up one file at a time and torn down one file at a time, gives after
// each step exactly the views a new assembler gives for the folder as it
// is then.
func TestIncrementalEqualsFromScratch(t *testing.T) {
	for name, files := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			f := newFolder(t)
			for i, in := range files {
				f.put(in)
				f.step()
				if d := same(f.asm, fromScratch(t, f.dir)); d != "" {
					t.Fatalf("after adding %d of %d files (%s/%s): %s", i+1, len(files), in.member, filepath.Base(in.path), d)
				}
			}
			for i, in := range files {
				f.remove(in)
				f.step()
				if d := same(f.asm, fromScratch(t, f.dir)); d != "" {
					t.Fatalf("after removing %d of %d files (%s/%s): %s", i+1, len(files), in.member, filepath.Base(in.path), d)
				}
			}
		})
	}
}

// Random sequences of adding and removing the golden files, several at a
// time, keep the incremental views equal to a fresh build's.
func TestRandomSequencesEqualFromScratch(t *testing.T) {
	var all []inputFile
	for name, files := range goldenCases(t) {
		for _, f := range files {
			// Members of different cases must not collide: prefix them.
			all = append(all, inputFile{member: name + "-" + f.member, path: f.path})
		}
	}
	slices.SortFunc(all, func(a, b inputFile) int { return strings.Compare(a.member+a.path, b.member+b.path) })
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			f := newFolder(t)
			present := map[int]bool{}
			for step := range 25 {
				for range 1 + rng.IntN(4) {
					i := rng.IntN(len(all))
					if present[i] {
						f.remove(all[i])
					} else {
						f.put(all[i])
					}
					present[i] = !present[i]
				}
				f.step()
				if d := same(f.asm, fromScratch(t, f.dir)); d != "" {
					t.Fatalf("step %d: %s", step, d)
				}
			}
		})
	}
}

// Change classes: after one EndpointSlice change, the Flush translates
// exactly that service's ClusterLoadAssignments, one per view and TCP
// port, and its Plan updates endpoints only.
func TestEndpointChangeTranslatesEndpointsOnly(t *testing.T) {
	f := newFolder(t)
	for _, in := range goldenCases(t)["clusterset"] {
		f.put(in)
	}
	f.step()
	// cart in east: two ports (http, grpc); its slice gets a third pod.
	cart := filepath.Join(f.dir, "east", "cart.yaml")
	b, err := os.ReadFile(cart)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `- addresses: ["10.1.1.12"]`, "- addresses: [\"10.1.1.13\"]\n  conditions: {ready: true}\n- addresses: [\"10.1.1.12\"]", 1)
	if edited == string(b) {
		t.Fatal("the demo's cart slice changed; update the test")
	}
	if err := os.WriteFile(cart, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := f.step()
	views := 0
	for _, v := range f.asm.Views() {
		if v.Role != translate.RoleGatewayAPI {
			views++
		}
	}
	// The Gateway shop/public routes /cart to cart: its view's cart
	// backend is translated again too (cluster and endpoints).
	if want := views*2 + 2; plan.Translated != want {
		t.Errorf("translated %d resources, want %d (2 ports x %d views, and the Gateway's cart backend)", plan.Translated, want, views)
	}
	for _, u := range plan.Updates {
		if u.Type != resourcev3.EndpointType && !strings.Contains(u.View, "gateway-api") {
			t.Errorf("an endpoint change updated %s in %s", u.Type, u.View)
		}
	}
	if d := same(f.asm, fromScratch(t, f.dir)); d != "" {
		t.Errorf("after the endpoint change: %s", d)
	}
}

// A service's cluster is one message for every view of a role (and so
// marshalled once by the cache): every client view of the demo holds the
// same Cluster message for cart, and every gateway view another.
func TestClustersSharedAcrossViewsOfARole(t *testing.T) {
	f := newFolder(t)
	for _, in := range goldenCases(t)["clusterset"] {
		f.put(in)
	}
	f.step()
	first := map[translate.Role]proto.Message{}
	for _, v := range f.asm.Views() {
		if v.Role == translate.RoleGatewayAPI {
			continue
		}
		for _, r := range f.asm.View(v).Resources {
			if r.Type != resourcev3.ClusterType || r.Name != "cart.shop.svc.clusterset.local:80" {
				continue
			}
			if m, ok := first[v.Role]; !ok {
				first[v.Role] = r.Message
			} else if m != r.Message {
				t.Errorf("%s holds a cluster of its own for cart", v)
			}
		}
	}
	if len(first) != 2 {
		t.Fatalf("cart's cluster found for roles %v", first)
	}
}

// A tunnel Secret that is not a usable certificate (a rotation gone
// wrong) keeps the member's last good certificate served and is reported
// against the gateway view; a good one again replaces it and clears the
// report.
func TestTunnelSecretKeepsLastGood(t *testing.T) {
	f := newFolder(t)
	for _, in := range goldenCases(t)["networks"] {
		f.put(in)
	}
	f.step()
	served := func() []byte {
		t.Helper()
		for _, r := range f.asm.View(translate.View{Cluster: "east", Role: translate.RoleGateway}).Resources {
			if r.Name == translate.TunnelCertificateSecret {
				return r.Message.(*tlsv3.Secret).GetTlsCertificate().GetCertificateChain().GetInlineBytes()
			}
		}
		return nil
	}
	good := served()
	if len(good) == 0 {
		t.Fatal("east's gateway has no tunnel certificate")
	}
	secret := filepath.Join(f.dir, "east", "cluster.yaml")
	orig, err := os.ReadFile(secret)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(orig), "-----BEGIN CERTIFICATE-----\n    MII", "-----BEGIN CERTIFICATE-----\n    XXX", 1)
	if err := os.WriteFile(secret, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	f.step()
	if got := served(); !bytes.Equal(got, good) {
		t.Errorf("after a broken rotation east's gateway is served %q, want the last good certificate", got)
	}
	inv := f.asm.Invalid()["east/gateway"]
	if len(inv) != 1 || inv[0].Name != translate.TunnelCertificateSecret || !strings.Contains(inv[0].Err.Error(), "previous certificate stays in use") {
		t.Errorf("reported %v, want the tunnel Secret's problem", inv)
	}
	if err := os.WriteFile(secret, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	f.step()
	if inv := f.asm.Invalid()["east/gateway"]; len(inv) != 0 {
		t.Errorf("still reported after a good Secret: %v", inv)
	}
}

// --tunnel-port (Options.TunnelPort) is the port, and in the name, of
// every tunnelling gateway's tunnel listener.
func TestTunnelPortOption(t *testing.T) {
	a := assemble.New(assemble.Options{KeepViews: true, TunnelPort: 16443})
	dir := t.TempDir()
	f := &folder{t: t, dir: dir, src: instantDir(dir), asm: a}
	for _, in := range goldenCases(t)["networks"] {
		f.put(in)
	}
	f.step()
	found := false
	for _, r := range a.View(translate.View{Cluster: "east", Role: translate.RoleGateway}).Resources {
		if r.Name == translate.TunnelListenerName(16443) {
			found = r.Message.(*listenerv3.Listener).GetAddress().GetSocketAddress().GetPortValue() == 16443
		}
	}
	if !found {
		t.Error("east's gateway has no tunnel listener on 16443")
	}
}

// ListenAddress binds every listener a gateway is served (its HTTP,
// tunnel and relay listeners) to that address (make run: loopback, so a
// demo Envoy on a laptop listens on nothing else); by default they bind
// every address, as in a pod.
func TestListenAddressOption(t *testing.T) {
	for addr, want := range map[string]string{"": "0.0.0.0", "127.0.0.1": "127.0.0.1"} {
		a := assemble.New(assemble.Options{KeepViews: true, ListenAddress: addr})
		dir := t.TempDir()
		f := &folder{t: t, dir: dir, src: instantDir(dir), asm: a}
		for _, in := range goldenCases(t)["networks"] {
			f.put(in)
		}
		f.step()
		kinds := map[string]bool{}
		for _, r := range a.View(translate.View{Cluster: "east", Role: translate.RoleGateway}).Resources {
			lis, ok := r.Message.(*listenerv3.Listener)
			if !ok {
				continue
			}
			sa := lis.GetAddress().GetSocketAddress()
			if sa == nil {
				continue // an internal listener (the tunnels' own), bound to nothing
			}
			if got := sa.GetAddress(); got != want {
				t.Errorf("ListenAddress %q: listener %s binds %s, want %s", addr, lis.Name, got, want)
			}
			for _, k := range []string{"http", "tunnel", "relay"} {
				if strings.Contains(lis.Name, "-"+k+"-") {
					kinds[k] = true
				}
			}
		}
		if !kinds["http"] || !kinds["tunnel"] || !kinds["relay"] {
			t.Errorf("east's gateway view lacks a kind of listener: %v", kinds)
		}
	}
}

// Finding 2 of the trust-boundaries issue: a ca.crt holding a CERTIFICATE
// block that is not a certificate was kept in the trust bundle every
// gateway of every member is sent, and every Envoy rejected the bundle
// (a restarted gateway then had no tunnel listener). Now the block is
// dropped, the rest of the bundle is served, and the problem is shown on
// the member (tunnelError). A tunnel Secret deleted takes the member off
// the tunnels and says so: gatewayError, the Reachable condition False.
func TestTunnelTrustBundleAndMissingSecret(t *testing.T) {
	f := newFolder(t)
	for _, in := range goldenCases(t)["networks"] {
		f.put(in)
	}
	f.step()
	bundle := func(view translate.View) []byte {
		t.Helper()
		for _, r := range f.asm.View(view).Resources {
			if r.Name == translate.TunnelTrustSecret {
				return r.Message.(*tlsv3.Secret).GetValidationContext().GetTrustedCa().GetInlineBytes()
			}
		}
		return nil
	}
	member := func(name string) mcs.ClusterInfo {
		for _, c := range f.last.State.Clusters {
			if c.Member == name {
				return c
			}
		}
		t.Fatalf("no member %s", name)
		return mcs.ClusterInfo{}
	}
	good := bundle(translate.View{Cluster: "west", Role: translate.RoleGateway})
	if len(good) == 0 {
		t.Fatal("west's gateway has no trust bundle")
	}
	path := filepath.Join(f.dir, "east", "cluster.yaml")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	garbage := "  ca.crt: |\n    -----BEGIN CERTIFICATE-----\n    AAAAAAAA\n    -----END CERTIFICATE-----\n"
	if err := os.WriteFile(path, []byte(strings.Replace(string(orig), "  ca.crt: |\n", garbage, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	f.step()
	for _, v := range []translate.View{{Cluster: "west", Role: translate.RoleGateway}, {Cluster: "east", Role: translate.RoleGateway}} {
		got := bundle(v)
		for rest := got; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				t.Errorf("%s is sent a trust bundle with a block that does not parse: %v", v, err)
			}
		}
		if !bytes.Equal(got, good) {
			t.Errorf("%s's trust bundle changed, want the good certificates kept", v)
		}
	}
	if e := member("east").TunnelError; !strings.Contains(e, "dropped what does not parse") {
		t.Errorf("east's tunnelError %q, want the dropped block reported", e)
	}
	// The Secret deleted: east is off the tunnels, and says why.
	var kept []string
	for _, doc := range strings.Split(string(orig), "\n---\n") {
		if !strings.Contains(doc, "kind: Secret") {
			kept = append(kept, doc)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(kept, "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	f.step()
	east := member("east")
	if !strings.Contains(east.GatewayError, "no usable tunnel certificate") || !strings.Contains(east.TunnelError, "not found") {
		t.Errorf("east without its tunnel Secret: gatewayError %q, tunnelError %q; want both to say so", east.GatewayError, east.TunnelError)
	}
	if c := mcs.ReachableCondition(f.last.State.Clusters, "east", 1); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("east's exports' Reachable condition %+v, want False", c)
	}
}

// Finding 4 of the trust-boundaries issue, for tunnels: with the
// operator's trust anchors, the trust bundle every gateway gets is the
// anchors (never a member's ca.crt), and a member's tunnel certificate is
// used only when its own anchor issued it: west's certificate, from a CA
// that is east's anchor and not west's, is refused and reported, and
// west is off the tunnels.
func TestTunnelCertificatesFromTheirMembersAnchor(t *testing.T) {
	b, err := os.ReadFile("../../testdata/networks.in/east/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var eastCA string
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var s corev1.Secret
		if yaml.Unmarshal([]byte(doc), &s) == nil && s.StringData["ca.crt"] != "" {
			eastCA = s.StringData["ca.crt"]
		}
	}
	other, err := os.ReadFile(cptest.NewCA(t).File)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for m, pem := range map[string]string{"east": eastCA, "west": string(other), "central": string(other)} {
		if err := os.WriteFile(filepath.Join(dir, m+".pem"), []byte(pem), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	anchors, err := trust.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := newFolder(t)
	f.asm = assemble.New(assemble.Options{KeepViews: true, Anchors: anchors})
	for _, in := range goldenCases(t)["networks"] {
		f.put(in)
	}
	f.step()
	secrets := func(v translate.View) map[string]*tlsv3.Secret {
		out := map[string]*tlsv3.Secret{}
		for _, r := range f.asm.View(v).Resources {
			if s, ok := r.Message.(*tlsv3.Secret); ok {
				out[r.Name] = s
			}
		}
		return out
	}
	east := secrets(translate.View{Cluster: "east", Role: translate.RoleGateway})
	if got := east[translate.TunnelTrustSecret].GetValidationContext().GetTrustedCa().GetInlineBytes(); !bytes.Equal(got, anchors.Bundle()) {
		t.Errorf("east's trust bundle is not the anchors")
	}
	if east[translate.TunnelCertificateSecret] == nil {
		t.Error("east's own certificate, from its anchor, is not served")
	}
	if west := secrets(translate.View{Cluster: "west", Role: translate.RoleGateway}); west[translate.TunnelCertificateSecret] != nil {
		t.Error("west is served a tunnel certificate its anchor did not issue")
	}
	for _, c := range f.last.State.Clusters {
		if c.Member == "west" && (!strings.Contains(c.TunnelError, "not issued by member west's trust anchor") || !strings.Contains(c.GatewayError, "no usable tunnel certificate")) {
			t.Errorf("west: tunnelError %q, gatewayError %q; want both to say why", c.TunnelError, c.GatewayError)
		}
	}
	// The operator gives west its right anchor (the anchors are read
	// again while serving): west's certificate is checked again, and used.
	if err := os.WriteFile(filepath.Join(dir, "west.pem"), []byte(eastCA), 0o600); err != nil {
		t.Fatal(err)
	}
	if anchors, err = trust.Load(dir); err != nil {
		t.Fatal(err)
	}
	f.asm.SetAnchors(anchors)
	f.step()
	if west := secrets(translate.View{Cluster: "west", Role: translate.RoleGateway}); west[translate.TunnelCertificateSecret] == nil {
		t.Error("west's certificate, from its new anchor, is not served")
	}
}
