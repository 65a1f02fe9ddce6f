package envoy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

// httpsPort is the Gateway listener port of the HTTPS tests.
const httpsPort = 18443

// secretYAML is a kubernetes.io/tls Secret holding leaf.
func secretYAML(t testing.TB, name string, leaf cptest.Leaf) string {
	crt, key := leaf.PEM(t)
	indent := func(s string) string { return "    " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n    ") }
	return fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: infra}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n%s\n  tls.key: |\n%s\n", name, indent(crt), indent(key))
}

// writeFile saves a file of the ClusterSet folder (testkit.WriteFile).
func writeFile(t testing.TB, path, content string) { t.Helper(); testkit.WriteFile(t, path, content) }

// servedSerial returns the serial number of the certificate Envoy serves
// for SNI name.
func servedSerial(t testing.TB, ca *cptest.CA, addr, name string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: ca.Pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		return "error: " + err.Error()
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// An Envoy implementing a Gateway, connected over mutual TLS with the
// certificate-bound identity of that Gateway, gets its listeners'
// certificates over SDS and serves them: SNI picks each listener's
// certificate, and when a Secret is rotated the new certificate is served
// to new connections while an open connection goes on working.
func TestHTTPSListenersServeSecretsOverMutualTLS(t *testing.T) {
	ca := cptest.NewCA(t)
	a, b := ca.ServerFor(t, "a.example.com"), ca.ServerFor(t, "b.example.com")
	dir := t.TempDir()
	gateway := fixture.ClusterYAML("east") + "---\n" + fixture.GatewayClassYAML + fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls, namespace: infra, generation: 1}
spec:
  gatewayClassName: eastwest
  listeners:
  - {name: a, port: %[1]d, protocol: HTTPS, hostname: a.example.com, tls: {certificateRefs: [{name: a-cert}]}}
  - {name: b, port: %[1]d, protocol: HTTPS, hostname: b.example.com, tls: {certificateRefs: [{name: b-cert}]}}
`, httpsPort)
	writeFile(t, filepath.Join(dir, "east", "gateway.yaml"), gateway)
	writeFile(t, filepath.Join(dir, "east", "a-cert.yaml"), secretYAML(t, "a-cert", a))
	writeFile(t, filepath.Join(dir, "east", "b-cert.yaml"), secretYAML(t, "b-cert", b))

	srv := ca.Server(t)
	cfg := controlplane.Config{Dir: dir}
	cfg.Writer.ListenAddress = testkit.Loopback(t, httpsPort)
	addr := fmt.Sprintf("%s:%d", cfg.Writer.ListenAddress, httpsPort)
	cfg.XDSTLS = controlplane.TLSFiles{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.File}
	app := cptest.StartWith(t, cfg)
	v := translate.View{Cluster: "east", Role: translate.RoleGatewayAPI, Gateway: "infra/tls"}
	id := controlplane.IdentityPolicy{}.IdentityURI("any", v)
	client := ca.Client(t, id)
	e := envoytest.ForView(t, app, v, "tls-envoy", true, &envoytest.TLS{CertFile: client.CertFile, KeyFile: client.KeyFile, CAFile: ca.File, ServerName: "localhost"})
	e.WaitSynced(t, app, "tls-envoy", v.String())
	e.CheckAccepted(t, app, v.String())

	for name, leaf := range map[string]cptest.Leaf{"a.example.com": a, "b.example.com": b} {
		if got := servedSerial(t, ca, addr, name); got != leaf.Serial.String() {
			t.Errorf("SNI %s: served certificate %s, want the Secret's %s", name, got, leaf.Serial)
		}
	}

	// An open connection, then the rotation of a's Secret.
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example.com", RootCAs: ca.Pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	ask := func() error {
		if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	if err := ask(); err != nil {
		t.Fatalf("request on the open connection: %v", err)
	}
	a2 := ca.ServerFor(t, "a.example.com")
	writeFile(t, filepath.Join(dir, "east", "a-cert.yaml"), secretYAML(t, "a-cert", a2))
	deadline := time.Now().Add(10 * time.Second)
	for servedSerial(t, ca, addr, "a.example.com") != a2.Serial.String() {
		if time.Now().After(deadline) {
			t.Fatalf("the rotated certificate is not served after 10s (still %s)", servedSerial(t, ca, addr, "a.example.com"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := ask(); err != nil {
		t.Errorf("the connection opened before the rotation was dropped: %v", err)
	}
	if got := servedSerial(t, ca, addr, "b.example.com"); got != b.Serial.String() {
		t.Errorf("b's certificate changed with a's rotation: %s", got)
	}
}
