package envoy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/eastwest-dev/eastwest/internal/golden"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

// runEnvoyBootstrap is what `make run-envoy` starts: east's east-west
// gateway against `make run`.
const runEnvoyBootstrap = "../../examples/envoy/gateway-east.json"

// The demo gateway's bootstrap is the shipped one (deploy/envoy/
// bootstrap.yaml) with only what make run needs changed: the plaintext
// control plane on 127.0.0.1:18000 and the admin on 127.0.0.1:9901; it
// passes `envoy --mode validate` (go test -update writes it again).
func TestRunEnvoyBootstrap(t *testing.T) {
	b, err := envoytest.Bootstrap(envoytest.Options{Bootstrap: envoytest.Shipped("bootstrap.yaml"), XDS: "127.0.0.1:18000", AdminPort: 9901, StatsPort: 15090})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["admin"] = map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 9901}}}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, runEnvoyBootstrap, out.Bytes())
	// Validated as written: with the node make run-envoy gives it.
	path := filepath.Join(t.TempDir(), "gateway-east.json")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := envoytest.Validate(t, path, "demo-gateway", "east"); err != nil {
		t.Fatal(err)
	}
}
