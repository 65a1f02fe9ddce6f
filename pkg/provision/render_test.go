package provision_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/internal/golden"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// TestRenderGolden guards what a Gateway's Envoys are given, one
// behaviour per case: testdata/<case>.in.yaml holds a Gateway of class
// eastwest and the GatewayParameters its class ("class") and itself (its
// infrastructure.parametersRef) name; <case>.out.yaml is every object
// Render returns, or the parameters' error.
func TestRenderGolden(t *testing.T) {
	for _, in := range testkit.Cases(t, filepath.Join("testdata", "*.in.yaml")) {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			gw, class, own := readCase(t, in)
			var out []byte
			p, err := provision.Resolve(class, own)
			if err != nil {
				out = []byte("error: |\n  " + strings.ReplaceAll(err.Error(), "\n", "\n  ") + "\n")
			} else {
				objs, err := provision.Render(gw, "eastwest", provision.Member{ClusterID: "east", ClusterSet: "prod", TrustDomain: "eastwest.io"}, p)
				if err != nil {
					t.Fatal(err)
				}
				out = renderObjects(t, objs)
			}
			golden.Check(t, filepath.Join("testdata", name+".out.yaml"), out)
		})
	}
	golden.NoOrphans(t, filepath.Join("testdata", "*.out.yaml"))
}

// readCase reads a case's Gateway and parameters.
func readCase(t *testing.T, path string) (gw *gwapiv1.Gateway, class, own *provision.GatewayParameters) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var head struct{ Kind string }
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		switch head.Kind {
		case "Gateway":
			gw = &gwapiv1.Gateway{}
			if err := yaml.UnmarshalStrict(doc, gw); err != nil {
				t.Fatal(err)
			}
		case provision.KindGatewayParameters:
			gp := &provision.GatewayParameters{}
			if err := yaml.UnmarshalStrict(doc, gp); err != nil {
				t.Fatal(err)
			}
			if gp.Name == "class" {
				class = gp
			} else {
				own = gp
			}
		case "":
		default:
			t.Fatalf("%s: kind %s", path, head.Kind)
		}
	}
	if gw == nil {
		t.Fatalf("%s: no Gateway", path)
	}
	return gw, class, own
}

// renderObjects is the objects as one YAML stream, ConfigMap files as
// text.
func renderObjects(t *testing.T, o provision.Objects) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("identitySecret: " + o.IdentitySecret + "\n")
	for _, obj := range []any{o.ServiceAccount, o.ConfigMap, o.Deployment, o.Service, o.PodDisruptionBudget} {
		if obj == nil || (obj == any(o.PodDisruptionBudget) && o.PodDisruptionBudget == nil) {
			continue
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes()
}
