package helm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	cpaccess "sigs.k8s.io/cluster-inventory-api/pkg/access"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"

	"github.com/eastwest-dev/eastwest/deploy/crds"
	"github.com/eastwest-dev/eastwest/internal/golden"
	"github.com/eastwest-dev/eastwest/internal/manifest"
	"github.com/eastwest-dev/eastwest/test/kube"
)

const (
	chart     = "eastwest"
	namespace = "eastwest-system"
)

// cacheDir is where `make helm` puts helm (bin/) and the CRDs (crds/).
func cacheDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("EASTWEST_HELM_CACHE"); d != "" {
		return d
	}
	d, err := filepath.Abs(filepath.Join("..", "..", ".cache"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func helmBin(t testing.TB) string {
	t.Helper()
	p := filepath.Join(cacheDir(t), "bin", "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no helm at %s: run `make helm` (test/tools/helm.sh)", p)
	}
	return p
}

// helm runs the helm command and returns its standard output.
func helm(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	// Helm's own state (repositories, caches) stays in the test's folder.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// render is helm template of the chart with the values files (and extra
// arguments).
func render(t testing.TB, values []string, extra ...string) []byte {
	t.Helper()
	args := []string{"template", "eastwest", chart, "--namespace", namespace}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	out, err := helm(t, append(args, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decode(t testing.TB, b []byte) []unstructured.Unstructured {
	t.Helper()
	out, err := manifest.Objects(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The installs the tests render: the chart's defaults, a production
// install, and each plain manifest's values.
func installs(t testing.TB) map[string][]string {
	t.Helper()
	out := map[string][]string{
		"default":    nil,
		"production": {filepath.Join(chart, "ci", "production-values.yaml")},
	}
	for _, f := range plainValues(t) {
		out["plain "+filepath.Base(f)] = []string{f}
	}
	return out
}

func plainValues(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "kubernetes", "values", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values of plain manifests in deploy/kubernetes/values (%v)", err)
	}
	return files
}

// helm lint --strict passes with the default values and with each values
// file the tests install.
func TestLint(t *testing.T) {
	for name, values := range installs(t) {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", chart, "--namespace", namespace}
			for _, v := range values {
				args = append(args, "-f", v)
			}
			if out, err := helm(t, args...); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
}

// What every install renders holds by construction: named, namespaced
// where it must be, no object twice, and nothing listening beyond
// loopback without TLS (security by default).
func TestTemplate(t *testing.T) {
	want := map[string][]string{
		"default": {"Deployment/eastwest", "Service/eastwest", "Certificate/eastwest-xds", "PodDisruptionBudget/eastwest",
			"Role/eastwest-control-plane", "ServiceAccount/eastwest"},
		"production": {"Deployment/eastwest", "ServiceMonitor/eastwest", "PrometheusRule/eastwest", "Certificate/eastwest-metrics-client",
			"ClusterRole/eastwest-member", "Deployment/eastwest-gateway", "Certificate/eastwest-tunnel", "Service/eastwest-gateway"},
	}
	for name, values := range installs(t) {
		t.Run(name, func(t *testing.T) {
			seen := map[string]bool{}
			for _, u := range decode(t, render(t, values)) {
				id := u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
				if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
					t.Errorf("incomplete object %v", u.Object)
				}
				if seen[id] {
					t.Errorf("%s rendered twice", id)
				}
				seen[id] = true
				seen[u.GetKind()+"/"+u.GetName()] = true
				checkListeners(t, u)
			}
			for _, w := range want[name] {
				if !seen[w] {
					t.Errorf("no %s", w)
				}
			}
		})
	}
	// What the chart refuses, with a message that says why.
	refusals := []struct {
		set, msg string
	}{
		{"gateway.enabled=true", "gateway.clusterID"},
		{"controlPlane.metrics.serviceMonitor.enabled=true", "needs controlPlane.metrics.expose"},
		// values.schema.json: a typo or a wrong type is refused, not ignored.
		{"controlplane.replicas=3", "additional properties 'controlplane' not allowed"},
		{"controlPlane.replicas=0", "/controlPlane/replicas"},
		{"gateway.xdsAddress=eastwest", "/gateway/xdsAddress"},
		{"controlPlane.extraArgs[0]=stale-after", "/controlPlane/extraArgs/0"},
		// Without cert-manager, nothing may ask it for a certificate.
		{"certManager.enabled=false,certManager.selfSignedCA.enabled=true", "need cert-manager"},
		{"certManager.enabled=false,clientCertificates[0].name=app,clientCertificates[0].namespace=default,clientCertificates[0].cluster=east", "need cert-manager"},
	}
	for _, r := range refusals {
		_, err := helm(t, "template", "eastwest", chart, "--namespace", namespace, "--set", r.set)
		if err == nil || !strings.Contains(err.Error(), r.msg) {
			t.Errorf("--set %s: %v, want a refusal saying %q", r.set, err, r.msg)
		}
	}
}

// certManager.enabled=false renders no cert-manager object, in any part
// of the chart, and every workload still mounts the Secrets those
// objects would have made (made by the user's own PKI instead).
func TestWithoutCertManager(t *testing.T) {
	on := decode(t, render(t, []string{filepath.Join(chart, "ci", "production-values.yaml")}))
	off := decode(t, render(t, []string{filepath.Join(chart, "ci", "production-values.yaml")},
		"--set", "certManager.enabled=false,certManager.issuancePolicy.enabled=false,clientCertificates=null"))
	secrets := func(objs []unstructured.Unstructured) map[string]bool {
		out := map[string]bool{}
		for _, u := range objs {
			if strings.HasSuffix(u.GetAPIVersion(), "cert-manager.io/v1") || strings.Contains(u.GetAPIVersion(), "cert-manager.io/") {
				if u.GetKind() == "Certificate" {
					name, _, _ := unstructured.NestedString(u.Object, "spec", "secretName")
					out["certificate "+u.GetNamespace()+"/"+name] = true
				}
				continue
			}
			vols, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "volumes")
			for _, v := range vols {
				if name, ok, _ := unstructured.NestedString(v.(map[string]any), "secret", "secretName"); ok {
					out["mount "+u.GetNamespace()+"/"+name] = true
				}
			}
		}
		return out
	}
	for _, u := range off {
		if strings.Contains(u.GetAPIVersion(), "cert-manager.io") {
			t.Errorf("certManager.enabled=false rendered %s %s/%s", u.GetAPIVersion(), u.GetKind(), u.GetName())
		}
	}
	withCM, withoutCM := secrets(on), secrets(off)
	n := 0
	for k := range withCM {
		if name, ok := strings.CutPrefix(k, "certificate "); ok && withCM["mount "+name] {
			n++
			if !withoutCM["mount "+name] {
				t.Errorf("without cert-manager, nothing mounts %s", name)
			}
		}
	}
	if n == 0 {
		t.Error("the production install mounts no Secret of a Certificate: the test checks nothing")
	}
}

// checkListeners: a control plane that listens beyond loopback does so
// behind TLS, and its probes reach the debug endpoint.
func checkListeners(t *testing.T, u unstructured.Unstructured) {
	t.Helper()
	if u.GetKind() != "Deployment" || u.GetName() != "eastwest" {
		return
	}
	containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		args, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
		flag := func(name string) string {
			for _, a := range args {
				if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
					return v
				}
			}
			return ""
		}
		for _, l := range []string{"debug", "xds"} {
			addr := flag(l + "-address")
			if addr != "" && !strings.HasPrefix(addr, "127.0.0.1:") && flag(l+"-tls-cert") == "" {
				t.Errorf("--%s-address=%s without --%s-tls-cert", l, addr, l)
			}
		}
		if addr := flag("debug-address"); !strings.HasPrefix(addr, "127.0.0.1:") && flag("debug-tls-client-ca") == "" {
			t.Errorf("the debug endpoint (/debug, /metrics) on %s takes clients without a certificate", addr)
		}
		probe, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "readinessProbe", "exec", "command")
		if !slices.Contains(probe, "probe") {
			t.Errorf("readiness probe %v is not xds probe", probe)
		}
	}
}

// The plain manifests of deploy/kubernetes are the chart rendered with
// deploy/kubernetes/values/<name>.yaml: one source (go test -update
// renders them again).
func TestPlainManifestsAreRenderedFromTheChart(t *testing.T) {
	for _, values := range plainValues(t) {
		name := filepath.Base(values)
		t.Run(name, func(t *testing.T) {
			var extra []string
			if name == "prometheusrule.yaml" {
				extra = []string{"--show-only", "templates/prometheusrule.yaml"}
			}
			header := fmt.Sprintf("# Rendered from the Helm chart deploy/helm/eastwest with values/%s\n"+
				"# (`go test ./deploy/helm -update`): edit the chart or the values, not this file.\n", name)
			golden.Check(t, filepath.Join("..", "kubernetes", name), append([]byte(header), render(t, []string{values}, extra...)...))
		})
	}
}

// The production install, rendered, is kept in testdata/production.yaml
// (go test -update): a chart change shows in review as the objects it
// changes, and cmd/xds checks the control plane's flags against it.
func TestProductionRender(t *testing.T) {
	golden.Check(t, filepath.Join("testdata", "production.yaml"), render(t, installs(t)["production"]))
}

// The chart's copies of shipped files are the files themselves: the
// Envoy bootstraps (validated in deploy/envoy) and the alert rules
// (promtool-tested in deploy/prometheus).
func TestChartFilesAreTheShippedOnes(t *testing.T) {
	for copy, original := range map[string]string{
		"gateway-bootstrap.yaml":     "../envoy/bootstrap.yaml",
		"gateway-api-bootstrap.yaml": "../envoy/gateway-api-bootstrap.yaml",
		"eastwest-rules.yaml":        "../prometheus/eastwest-rules.yaml",
	} {
		a, err := os.ReadFile(filepath.Join(chart, "files", copy))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(original)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s/files/%s differs from %s: copy it again", chart, copy, original)
		}
	}
	// The CRDs helm install puts in a cluster are the ones eastwest is
	// built and tested with: mcs-api's, the About API's and eastwest's own.
	for file, want := range map[string][]byte{
		"multicluster.x-k8s.io_serviceexports.yaml": mcscrd.ServiceExportCRD,
		"multicluster.x-k8s.io_serviceimports.yaml": mcscrd.ServiceImportCRD,
		"about.k8s.io_clusterproperties.yaml":       crds.ClusterPropertyCRD,
		"eastwest.io_gatewayparameters.yaml":        crds.GatewayParametersCRD,
	} {
		got, err := os.ReadFile(filepath.Join(chart, "crds", file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s/crds/%s differs from the one eastwest is built with: copy it again", chart, file)
		}
	}
}

// Every object of every install is created in a real apiserver with
// strict field validation (server-side apply): an unknown or misspelt
// field, a wrong type or a missing required field fails here, as it
// would at helm install. cert-manager's and the Prometheus Operator's
// CRDs are installed first, as on a cluster that runs them.
func TestInstallsAreAcceptedByAnAPIServer(t *testing.T) {
	c := kube.Start(t, "helm")[0]
	crds, err := filepath.Glob(filepath.Join(cacheDir(t), "crds", "*.yaml"))
	if err != nil || len(crds) < 6 {
		t.Fatalf("the CRDs are not in %s/crds: run `make helm` (%v)", cacheDir(t), err)
	}
	var docs [][]byte
	for _, f := range crds {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	if err := c.InstallCRDs(docs...); err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, ns := range []string{namespace, "shop", "cert-manager"} {
		if err := apply(ctx, c, mapper, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}); err != nil {
			t.Fatal(err)
		}
	}
	// The examples the docs point to (deploy/kubernetes/examples) are
	// held to the same strict apply.
	examples, _ := filepath.Glob(filepath.Join("..", "kubernetes", "examples", "*.yaml"))
	if len(examples) == 0 {
		t.Fatal("no examples in deploy/kubernetes/examples")
	}
	for _, f := range examples {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs := decode(t, b)
		for i := range objs {
			if err := apply(ctx, c, mapper, &objs[i]); err != nil {
				t.Errorf("%s: %s/%s: %v", f, objs[i].GetKind(), objs[i].GetName(), err)
			}
		}
	}
	for name, values := range installs(t) {
		t.Run(name, func(t *testing.T) {
			objs := decode(t, render(t, values))
			for i := range objs {
				if err := apply(ctx, c, mapper, &objs[i]); err != nil {
					t.Errorf("%s/%s: %v", objs[i].GetKind(), objs[i].GetName(), err)
				}
			}
		})
	}
}

func apply(ctx context.Context, c *kube.Cluster, mapper meta.RESTMapper, u *unstructured.Unstructured) error {
	return manifest.Apply(ctx, c.Dynamic, mapper, "eastwest-chart-test", u)
}

// The member's switches take away what they say: Gateway API access, TLS
// Secrets, the token Secret.
func TestMemberSwitches(t *testing.T) {
	tests := []struct {
		set, gone string
	}{
		{"member.gatewayAPI=false", "gateway.networking.k8s.io"},
		// Provisioning writes the Envoys' identity Secrets: no Secret at
		// all takes both off.
		{"member.tlsSecrets=false,member.gatewayProvisioning=false", "secrets"},
		{"member.gatewayProvisioning=false", "deployments"},
	}
	// The non-expiring token Secret is opt-in (nothing of eastwest reads
	// it; create-remote-secret requests a token of its own).
	for set, want := range map[string]bool{"": false, "member.tokenSecret=true": true} {
		args := []string{"--set", "controlPlane.enabled=false", "--set", "member.enabled=true"}
		if set != "" {
			args = append(args, "--set", set)
		}
		has := false
		for _, u := range decode(t, render(t, nil, args...)) {
			has = has || u.GetKind()+"/"+u.GetName() == "Secret/eastwest-token"
		}
		if has != want {
			t.Errorf("with %q: Secret/eastwest-token present %v, want %v", set, has, want)
		}
	}
	for _, tt := range tests {
		t.Run(tt.set, func(t *testing.T) {
			for _, off := range []bool{false, true} {
				args := []string{"--set", "controlPlane.enabled=false", "--set", "member.enabled=true"}
				if off {
					args = append(args, "--set", tt.set)
				}
				has := false
				for _, u := range decode(t, render(t, nil, args...)) {
					if u.GetKind()+"/"+u.GetName() == tt.gone {
						has = true
					}
					rules, _, _ := unstructured.NestedSlice(u.Object, "rules")
					for _, r := range rules {
						m := r.(map[string]any)
						groups, _, _ := unstructured.NestedStringSlice(m, "apiGroups")
						resources, _, _ := unstructured.NestedStringSlice(m, "resources")
						if slices.Contains(groups, tt.gone) || slices.Contains(resources, tt.gone) {
							has = true
						}
					}
				}
				if has == off {
					t.Errorf("with %s=%v: %s present %v", tt.set, off, tt.gone, has)
				}
			}
		})
	}
}

// The values that expose the control plane and the gateways to other
// clusters reach what they promise: the Service's type and externalIPs,
// the serving certificate's extra names, the gateway Service's
// externalIPs, the gateway bootstrap's server name (the Service name when
// it dials an IP, the host when it dials a name, xdsServerName over
// both), and the preStop drain (none at 0). test/clusterset runs them on
// real pods.
func TestExposureValues(t *testing.T) {
	objs := func(set ...string) map[string]unstructured.Unstructured {
		out := map[string]unstructured.Unstructured{}
		for _, u := range decode(t, render(t, nil, append([]string{"--set", "gateway.enabled=true,gateway.clusterID=east"}, set...)...)) {
			out[u.GetKind()+"/"+u.GetName()] = u
		}
		return out
	}
	str := func(u unstructured.Unstructured, path ...string) string {
		v, _, _ := unstructured.NestedFieldNoCopy(u.Object, path...)
		return fmt.Sprint(v)
	}
	o := objs("--set", "controlPlane.xds.service.loadBalancerSourceRanges={192.0.2.0/24},gateway.service.loadBalancerSourceRanges={198.51.100.0/24},controlPlane.xds.service.type=LoadBalancer,controlPlane.xds.service.externalIPs={10.0.0.7},controlPlane.xds.extraDNSNames={xds.example.com},controlPlane.xds.extraIPAddresses={10.0.0.7},gateway.service.externalIPs={10.0.0.8},gateway.xdsAddress=10.0.0.7:18000")
	for _, c := range []struct{ got, want string }{
		{str(o["Service/eastwest"], "spec", "type"), "LoadBalancer"},
		{str(o["Service/eastwest"], "spec", "externalIPs"), "[10.0.0.7]"},
		{str(o["Certificate/eastwest-xds"], "spec", "ipAddresses"), "[10.0.0.7]"},
		{str(o["Service/eastwest-gateway"], "spec", "externalIPs"), "[10.0.0.8]"},
		{str(o["Service/eastwest"], "spec", "loadBalancerSourceRanges"), "[192.0.2.0/24]"},
		{str(o["Service/eastwest-gateway"], "spec", "loadBalancerSourceRanges"), "[198.51.100.0/24]"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	if dns := str(o["Certificate/eastwest-xds"], "spec", "dnsNames"); !strings.Contains(dns, "xds.example.com") || !strings.Contains(dns, "eastwest."+namespace+".svc") {
		t.Errorf("dnsNames %s", dns)
	}
	for _, c := range []struct{ set, wantName, wantAddr string }{
		{"gateway.xdsAddress=10.0.0.7:18000", "eastwest.eastwest-system.svc", "address: 10.0.0.7"},
		{"gateway.xdsAddress=xds.example.com:443", "xds.example.com", "address: xds.example.com"},
		{"gateway.xdsAddress=10.0.0.7:18000,gateway.xdsServerName=xds.internal", "xds.internal", "address: 10.0.0.7"},
	} {
		boot := str(objs("--set", c.set)["ConfigMap/eastwest-gateway"], "data", "bootstrap.yaml")
		if !strings.Contains(boot, "sni: "+c.wantName) || !strings.Contains(boot, "exact: "+c.wantName) || !strings.Contains(boot, c.wantAddr) {
			t.Errorf("--set %s: the bootstrap does not dial %q and check %q:\n%s", c.set, c.wantAddr, c.wantName, boot)
		}
	}
	// Properties the operator sets, and the names only it sets, reach
	// xds serve as its flags (a value with spaces in one argument).
	args := str(objs("--set", "controlPlane.members.properties.euw1.jurisdiction\\.eastwest\\.io=EU,controlPlane.members.properties.euw1.region\\.topology\\.k8s\\.io=eu west")["Deployment/eastwest"], "spec", "template", "spec", "containers")
	for _, want := range []string{"--operator-properties=jurisdiction.eastwest.io ", "--member-property=euw1=jurisdiction.eastwest.io=EU ", "--member-property=euw1=region.topology.k8s.io=eu west "} {
		if !strings.Contains(args, want) {
			t.Errorf("the control plane's arguments lack %q: %s", want, args)
		}
	}
	if _, err := helm(t, "template", "eastwest", chart, "--namespace", namespace, "--set", "controlPlane.members.properties.euw1.jurisdiction\\.eastwest\\.io=EU\\,US"); err == nil {
		t.Error("a property value with a comma (two flag values) is rendered")
	}
	gw := objs()["Deployment/eastwest-gateway"]
	if !strings.Contains(str(gw, "spec", "template", "spec", "containers"), "preStop") {
		t.Error("gateways stop without the drain")
	}
	if strings.Contains(str(objs("--set", "gateway.drainSeconds=0")["Deployment/eastwest-gateway"], "spec", "template", "spec", "containers"), "preStop") {
		t.Error("drainSeconds=0 still drains")
	}
}

// controlPlane.members.clusterProfiles reads members from an inventory
// namespace: xds serve gets the inventory flags, the providers file is a
// ConfigMap the library reads, the control plane may read that
// namespace's ClusterProfiles and get the plugins' Secrets, the plugins
// come from an init container; without a namespace or a provider the
// render fails, saying which.
func TestClusterProfileValues(t *testing.T) {
	providers := `controlPlane.members.clusterProfiles.providers=[{"name":"secretreader","execConfig":{"apiVersion":"client.authentication.k8s.io/v1","command":"/etc/eastwest/plugins/secretreader-plugin","provideClusterInfo":true}}]`
	objs := map[string]unstructured.Unstructured{}
	for _, u := range decode(t, render(t, nil, "--set", "controlPlane.members.remoteSecrets=false,controlPlane.members.clusterProfiles.enabled=true,controlPlane.members.clusterProfiles.namespace=fleet,controlPlane.members.clusterProfiles.clusterManager=ocm,controlPlane.members.clusterProfiles.plugins.image=reg.example/plugins:v1,controlPlane.members.clusterProfiles.plugins.paths={/bin/secretreader-plugin}",
		"--set-json", providers)) {
		objs[u.GetKind()+"/"+u.GetNamespace()+"/"+u.GetName()] = u
	}
	dep := objs["Deployment/"+namespace+"/eastwest"]
	b, _ := json.Marshal(dep.Object)
	for _, want := range []string{"--inventory-namespace=fleet", "--cluster-manager=ocm", "--clusterprofile-provider-file=/etc/eastwest/clusterprofile/providers.json", `"image":"reg.example/plugins:v1"`, `"/bin/secretreader-plugin"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the Deployment lacks %s", want)
		}
	}
	cm := objs["ConfigMap/"+namespace+"/eastwest-clusterprofile-providers"]
	file, _, _ := unstructured.NestedString(cm.Object, "data", "providers.json")
	path := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := cpaccess.NewFromFile(path); err != nil || len(cfg.Providers) != 1 || cfg.Providers[0].ExecConfig == nil || !cfg.Providers[0].ExecConfig.ProvideClusterInfo {
		t.Errorf("the providers file %s does not read as the library's: %+v, %v", file, cfg, err)
	}
	role := objs["Role/fleet/eastwest-inventory"]
	if rb, _ := json.Marshal(role.Object); !strings.Contains(string(rb), "clusterprofiles") {
		t.Errorf("no Role to read the inventory's ClusterProfiles: %s", rb)
	}
	if rb, _ := json.Marshal(objs["Role/"+namespace+"/eastwest-control-plane"].Object); !strings.Contains(string(rb), `"resources":["secrets"],"verbs":["get"]`) {
		t.Errorf("the plugins may not get their Secrets: %s", rb)
	}
	for set, want := range map[string]string{
		"controlPlane.members.clusterProfiles.enabled=true":                                                      "name the inventory namespace",
		"controlPlane.members.clusterProfiles.enabled=true,controlPlane.members.clusterProfiles.namespace=fleet": "name at least one access provider",
	} {
		out, err := helm(t, "template", "eastwest", chart, "--namespace", namespace, "--set", set)
		if err == nil || !strings.Contains(string(out)+err.Error(), want) {
			t.Errorf("--set %s: %v, want a failure saying %q", set, err, want)
		}
	}
}
