package helm

import (
	"testing"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The issuance policy the chart ships (certManager.issuancePolicy, for
// cert-manager's approver-policy) lets a member's issuer sign that
// member's identities alone, each where it belongs: its rules, compiled
// and run by CEL as approver-policy runs them (self: the SAN; cr: the
// request's namespace), admit and refuse what the trust model says
// (docs/security.md). The objects themselves are applied strictly to a
// real apiserver with approver-policy's CRD by
// TestInstallsAreAcceptedByAnAPIServer.
func TestIssuancePolicy(t *testing.T) {
	const (
		east   = "spiffe://eastwest.io/clusterset/prod/cluster/east/role/"
		west   = "spiffe://eastwest.io/clusterset/prod/cluster/west/role/"
		debug  = "spiffe://eastwest.io/clusterset/prod/role/"
		ns     = namespace
		denied = false
	)
	tests := []struct {
		controlPlane bool
		field        string // uris or dnsNames
		value, in    string
		want         bool
	}{
		{false, "uris", east + "client", "shop", true},
		{false, "uris", east + "client", ns, true},
		{false, "uris", east + "gateway", ns, true},
		{false, "uris", east + "gateway", "shop", denied}, // a namespace user's way to the tunnel key
		{false, "uris", east + "gateway-api/gateway/shop/web", "shop", true},
		{false, "uris", east + "gateway-api/gateway/shop/web", "other", denied}, // another namespace's Gateway
		{false, "uris", east + "gateway-api/gateway/shopping/web", "shop", denied},
		{false, "uris", west + "client", "shop", denied}, // another member's identities
		{false, "uris", west + "gateway", ns, denied},
		{false, "uris", east + "operator", ns, denied},
		{false, "uris", debug + "operator", ns, denied}, // the control plane's identities, in a member
		{false, "uris", "spiffe://evil.example/clusterset/prod/cluster/east/role/client", "shop", denied},
		{true, "uris", debug + "operator", ns, true},
		{true, "uris", debug + "metrics", ns, true},
		{true, "uris", debug + "operator", "shop", denied},
		{true, "dnsNames", "eastwest." + ns + ".svc", ns, true},
		{true, "dnsNames", "eastwest." + ns + ".svc", "shop", denied},
	}
	env, err := cel.NewEnv(cel.Variable("self", cel.StringType), cel.Variable("cr", cel.MapType(cel.StringType, cel.DynType)), ext.Strings())
	if err != nil {
		t.Fatal(err)
	}
	rules := map[bool]map[string][]string{}
	for _, cp := range []bool{false, true} {
		args := []string{"--set", "controlPlane.enabled=false", "--set", "clusterSet=prod",
			"--set", "certManager.issuancePolicy.enabled=true", "--set", "certManager.issuancePolicy.cluster=east"}
		if cp {
			args = append(args, "--set", "certManager.issuancePolicy.controlPlane=true")
		}
		rules[cp] = map[string][]string{}
		for _, u := range decode(t, render(t, nil, args...)) {
			if u.GetKind() != "CertificateRequestPolicy" || u.GetName() != "eastwest-identities" {
				continue
			}
			for _, field := range []string{"uris", "dnsNames"} {
				vs, _, _ := unstructured.NestedSlice(u.Object, "spec", "allowed", field, "validations")
				for _, v := range vs {
					rules[cp][field] = append(rules[cp][field], v.(map[string]any)["rule"].(string))
				}
			}
		}
		if len(rules[cp]["uris"]) == 0 {
			t.Fatalf("controlPlane=%v: no URI rule rendered", cp)
		}
	}
	for _, tt := range tests {
		// Every validation of the field must pass (approver-policy ANDs
		// them); none rendered for a field means the field is not allowed.
		got := len(rules[tt.controlPlane][tt.field]) > 0
		for _, rule := range rules[tt.controlPlane][tt.field] {
			ast, iss := env.Compile(rule)
			if iss.Err() != nil {
				t.Fatalf("%q does not compile: %v", rule, iss.Err())
			}
			prg, err := env.Program(ast)
			if err != nil {
				t.Fatal(err)
			}
			out, _, err := prg.Eval(map[string]any{"self": tt.value, "cr": map[string]any{"namespace": tt.in, "name": "req"}})
			if err != nil {
				t.Fatal(err)
			}
			got = got && out.Value() == true
		}
		if got != tt.want {
			t.Errorf("controlPlane=%v: %s %q requested in %s: allowed %v, want %v", tt.controlPlane, tt.field, tt.value, tt.in, got, tt.want)
		}
	}
}
