package envoy

import (
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/envoystats"
	"github.com/eastwest-dev/eastwest/pkg/provision"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

// provisionPort is the provisioned Gateway's listener port.
const provisionPort = 18081

// The Envoy of a provisioned Gateway (pkg/provision's bootstrap and SDS
// files, as its ConfigMap and identity Secret mount them) connects to
// eastwest over mutual TLS as its Gateway's identity, is served the
// Gateway, carries its traffic, says Ready on the probe's port (the
// admin's /ready and nothing else of the admin), and takes a renewed
// client certificate without a restart when its Secret's folder is
// replaced as the kubelet replaces it.
func TestProvisionedEnvoy(t *testing.T) {
	ca := cptest.NewCA(t)
	be := envoytest.StartBackend(t, "east/web-0", memberIP(1, 5), 0, 0, -1)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "east", "cluster.yaml"), fixture.ClusterYAML("east"))
	writeFile(t, filepath.Join(dir, "east", "gateway.yaml"), fixture.GatewayClassYAML+fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: shop, generation: 1}
spec:
  gatewayClassName: eastwest
  listeners: [{name: web, port: %d, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop, generation: 1}
spec:
  parentRefs: [{name: public}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`, provisionPort))
	writeFile(t, filepath.Join(dir, "east", "web.yaml"), fixture.ServiceYAML("shop", "web", []string{fmt.Sprintf("http:80:%d", be.HTTPPort)}, be.IP))

	lo := testkit.Loopback(t, provisionPort, provision.ReadyPort, 9901)
	srv := ca.ServerAt(t, lo)
	cfg := controlplane.Config{Dir: dir, XDSAddress: lo + ":0"}
	cfg.Writer.ListenAddress = lo
	cfg.XDSTLS = controlplane.TLSFiles{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.File}
	app := cptest.StartWith(t, cfg)

	gw := &gwapiv1.Gateway{}
	gw.Name, gw.Namespace, gw.UID = "public", "shop", "0a1b2c3d-0000-4000-8000-000000000009"
	gw.Spec.Listeners = []gwapiv1.Listener{{Name: "web", Port: provisionPort, Protocol: gwapiv1.HTTPProtocolType}}
	p, err := provision.Resolve(&provision.GatewayParameters{Spec: provision.GatewayParametersSpec{
		XDS: &provision.XDSParameters{Address: app.XDSAddr(), ServerName: "localhost"},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := provision.Render(gw, "eastwest", provision.Member{ClusterID: "east"}, p)
	if err != nil {
		t.Fatal(err)
	}

	// The pod's files at the test's own paths, and its fixed addresses on
	// the test's own loopback address.
	bootDir, idDir := t.TempDir(), t.TempDir()
	local := strings.NewReplacer("/etc/envoy", bootDir, "/etc/eastwest/xds-tls", idDir, `"0.0.0.0"`, `"`+lo+`"`, `"127.0.0.1"`, `"`+lo+`"`)
	for name, content := range objs.ConfigMap.Data {
		writeFile(t, filepath.Join(bootDir, name), local.Replace(content))
	}
	v := translate.View{Cluster: "east", Role: translate.RoleGatewayAPI, Gateway: "shop/public"}
	id := objs.Deployment.Annotations[provision.AnnotationIdentity]
	if want := (controlplane.IdentityPolicy{}).IdentityURI("default", v); id != want {
		t.Fatalf("the Envoys' identity %q, want the Gateway's %q", id, want)
	}
	secretVersion(t, idDir, "..v1", ca.Client(t, id), ca)

	e := envoytest.Start(t, envoytest.Options{BootstrapFile: filepath.Join(bootDir, "bootstrap.json"), FileSecrets: []string{"xds-client", "xds-ca"}, NodeID: "public-envoy-1", Cluster: "east"})
	e.WaitSynced(t, app, "public-envoy-1", v.String())
	e.CheckAccepted(t, app, v.String())

	probe := fmt.Sprintf("http://%s:%d", lo, provision.ReadyPort)
	waitFor(t, "the readiness probe's /ready", func() (string, error) { return httpStatus(probe + "/ready") }, func(s string) bool { return s == "200 LIVE" })
	if got, err := httpStatus(probe + "/stats"); err != nil || !strings.HasPrefix(got, "404") {
		t.Errorf("the probe's port serves the admin's /stats: %q %v", got, err)
	}
	gateway := fmt.Sprintf("http://%s:%d/", lo, provisionPort)
	waitFor(t, "traffic through the Gateway", func() (string, error) {
		resp, body, err := envoytest.Send(envoytest.HTTPClient(false), "GET", gateway, "shop.example.com", nil)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("X-Backend"), strings.TrimSpace(body)), nil
	}, func(s string) bool { return strings.HasPrefix(s, "200 east/web-0") })
	// The probe's port also serves the Envoy's Prometheus stats, the
	// cross-cluster traffic tagged by member among them.
	waitFor(t, "the cross-cluster counter on the probe's /stats/prometheus", func() (string, error) {
		resp, err := http.Get(probe + "/stats/prometheus")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, envoystats.Completed+"{") && strings.Contains(line, envoystats.TagSource+`="east"`) && strings.Contains(line, envoystats.TagDestination+`="east"`) {
				return line, err
			}
		}
		return fmt.Sprintf("%d, no %s from east to east", resp.StatusCode, envoystats.Completed), err
	}, func(s string) bool { return strings.HasPrefix(s, envoystats.Completed) })

	// Renewal: the kubelet writes the Secret's new version into a folder
	// of its own and swaps the ..data link; Envoy watches the folder.
	renewed := ca.Client(t, id)
	secretVersion(t, idDir, "..v2", renewed, ca)
	waitFor(t, "Envoy holding the renewed certificate", func() (string, error) { return clientSerials(e) },
		func(s string) bool { return s == fmt.Sprintf("%x", renewed.Serial) }) // one certificate, the renewed one
}

// clientSerials are the serial numbers of the client certificates Envoy
// holds (its /certs), comma-separated.
func clientSerials(e *envoytest.Envoy) (string, error) {
	raw, err := e.Get("/certs")
	if err != nil {
		return "", err
	}
	var certs struct {
		Certificates []struct {
			CertChain []struct {
				SerialNumber string `json:"serial_number"`
			} `json:"cert_chain"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(raw), &certs); err != nil {
		return "", err
	}
	var out []string
	for _, c := range certs.Certificates {
		for _, cc := range c.CertChain {
			n, ok := new(big.Int).SetString(cc.SerialNumber, 16) // Envoy pads to whole bytes
			if !ok {
				return "", fmt.Errorf("/certs: serial %q", cc.SerialNumber)
			}
			out = append(out, fmt.Sprintf("%x", n))
		}
	}
	return strings.Join(out, ","), nil
}

// secretVersion writes a client certificate into dir as the kubelet
// writes a Secret volume: the files in a folder of their own (version),
// ..data linked to it (atomically replaced), and each file a link
// through ..data.
func secretVersion(t *testing.T, dir, version string, leaf cptest.Leaf, ca *cptest.CA) {
	t.Helper()
	cert, key := leaf.PEM(t)
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, version), 0o750); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"tls.crt": cert, "tls.key": key, "ca.crt": string(caPEM)} {
		if err := os.WriteFile(filepath.Join(dir, version, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(dir, name)); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// httpStatus is a GET's status code and body, on one line.
func httpStatus(url string) (string, error) {
	c := &http.Client{Timeout: 2 * 1e9}
	resp, err := c.Get(url) //nolint:noctx // bounded by the client's timeout
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b := make([]byte, 64)
	n, _ := resp.Body.Read(b)
	return strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, b[:n])), nil
}
