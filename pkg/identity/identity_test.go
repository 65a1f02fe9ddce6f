package identity

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"slices"
	"strings"
	"testing"
)

// Finding 5 of the trust-boundaries issue: identities are parsed by the
// SPIFFE ID specification, so that what the xDS check and Envoy's tunnel
// matchers (exact strings from the same parsed form) accept is one set.
// Before, url.Parse read a query, fragment, user info, percent-encoding
// and an upper-case scheme as if they were not there.
func TestParse(t *testing.T) {
	const east = "spiffe://eastwest.io/clusterset/demo/cluster/east/role/gateway"
	tests := map[string]struct {
		in     string
		want   ID
		errHas string
	}{
		"a gateway":                       {in: east, want: ID{TrustDomain: "eastwest.io", ClusterSet: "demo", Cluster: "east", Role: RoleGateway}},
		"a client":                        {in: "spiffe://corp.example/clusterset/prod/cluster/west-2/role/client", want: ID{TrustDomain: "corp.example", ClusterSet: "prod", Cluster: "west-2", Role: RoleClient}},
		"a Gateway API Envoy":             {in: "spiffe://eastwest.io/clusterset/demo/cluster/east/role/gateway-api/gateway/infra/tls", want: ID{TrustDomain: "eastwest.io", ClusterSet: "demo", Cluster: "east", Role: RoleGatewayAPI, Gateway: "infra/tls"}},
		"a query":                         {in: east + "?/role/client", errHas: "not a SPIFFE ID"},
		"a fragment":                      {in: east + "#/role/client", errHas: "not a SPIFFE ID"},
		"user info":                       {in: "spiffe://attacker@eastwest.io/clusterset/demo/cluster/east/role/gateway", errHas: "not a SPIFFE ID"},
		"a port":                          {in: "spiffe://eastwest.io:443/clusterset/demo/cluster/east/role/gateway", errHas: "not a SPIFFE ID"},
		"an upper-case scheme":            {in: "SPIFFE://eastwest.io/clusterset/demo/cluster/east/role/gateway", errHas: "not a SPIFFE ID"},
		"an upper-case domain":            {in: "spiffe://EastWest.io/clusterset/demo/cluster/east/role/gateway", errHas: "not a SPIFFE ID"},
		"percent-encoding":                {in: "spiffe://eastwest.io/clusterset/demo/cluster/%65ast/role/gateway", errHas: "not a SPIFFE ID"},
		"an encoded slash":                {in: "spiffe://eastwest.io/clusterset/demo/cluster/east/role/gateway-api/gateway/infra%2Ftls", errHas: "not a SPIFFE ID"},
		"an empty segment":                {in: "spiffe://eastwest.io/clusterset//cluster/east/role/gateway", errHas: "not a SPIFFE ID"},
		"a dot segment":                   {in: "spiffe://eastwest.io/clusterset/demo/cluster/./role/gateway", errHas: "not a SPIFFE ID"},
		"a dot-dot segment":               {in: "spiffe://eastwest.io/clusterset/demo/cluster/east/role/../role/gateway", errHas: "not a SPIFFE ID"},
		"a trailing slash":                {in: east + "/", errHas: "not a SPIFFE ID"},
		"no trust domain":                 {in: "spiffe:///clusterset/demo/cluster/east/role/gateway", errHas: "not a SPIFFE ID"},
		"another scheme":                  {in: "https://eastwest.io/clusterset/demo/cluster/east/role/gateway", errHas: "not a SPIFFE ID"},
		"a role more":                     {in: east + "/role/client", errHas: "nothing may follow"},
		"an unknown role":                 {in: "spiffe://eastwest.io/clusterset/demo/cluster/east/role/admin", errHas: `role "admin"`},
		"gateway-api, no Gateway":         {in: "spiffe://eastwest.io/clusterset/demo/cluster/east/role/gateway-api", errHas: "gateway-api ends"},
		"gateway-api, a Gateway too deep": {in: "spiffe://eastwest.io/clusterset/demo/cluster/east/role/gateway-api/gateway/a/b/c", errHas: "gateway-api ends"},
		"the operator":                    {in: "spiffe://eastwest.io/clusterset/demo/role/operator", want: ID{TrustDomain: "eastwest.io", ClusterSet: "demo", Role: RoleOperator}},
		"Prometheus":                      {in: "spiffe://eastwest.io/clusterset/demo/role/metrics", want: ID{TrustDomain: "eastwest.io", ClusterSet: "demo", Role: RoleMetrics}},
		"a member's operator":             {in: "spiffe://eastwest.io/clusterset/demo/cluster/east/role/operator", errHas: `role "operator"`},
		"a ClusterSet-wide gateway":       {in: "spiffe://eastwest.io/clusterset/demo/role/gateway", errHas: "ClusterSet-wide role"},
		"another shape":                   {in: "spiffe://eastwest.io/ns/default/sa/east", errHas: "does not start"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(tc.in)
			switch {
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("Parse(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.errHas)
			case tc.errHas == "" && err != nil:
				t.Fatalf("Parse(%q): %v", tc.in, err)
			case tc.errHas == "" && (got != tc.want || got.String() != tc.in):
				t.Fatalf("Parse(%q) = %+v (%s), want %+v", tc.in, got, got, tc.want)
			}
		})
	}
}

// FuzzParse: whatever Parse accepts prints back to the same string, so an
// exact matcher built from the parsed form matches exactly what was
// accepted.
func FuzzParse(f *testing.F) {
	f.Add("spiffe://eastwest.io/clusterset/demo/cluster/east/role/gateway")
	f.Add("spiffe://eastwest.io/clusterset/demo/cluster/east/role/gateway-api/gateway/infra/tls")
	f.Add("spiffe://attacker@eastwest.io/clusterset/demo/cluster/east/role/gateway?x")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("Parse(%q) prints back as %q", s, id.String())
		}
		if again, err := Parse(id.String()); err != nil || again != id {
			t.Fatalf("Parse(%q) = %+v, which reads back as %+v, %v", s, id, again, err)
		}
	})
}

// The URIs a certificate carries are read as written: Go's parsed form
// would turn "SPIFFE://" into "spiffe://", which Envoy's exact matchers
// never would.
func TestCertificateURIs(t *testing.T) {
	raw := []string{"SPIFFE://eastwest.io/clusterset/demo/cluster/east/role/gateway", "spiffe://eastwest.io/clusterset/demo/cluster/%65ast/role/gateway"}
	cert := &x509.Certificate{Extensions: []pkix.Extension{SubjectAltNameExtension(raw...)}}
	if got := CertificateURIs(cert); !slices.Equal(got, raw) {
		t.Fatalf("CertificateURIs = %q, want %q", got, raw)
	}
	for _, u := range CertificateURIs(cert) {
		if _, err := Parse(u); err == nil {
			t.Errorf("%q parsed as an identity", u)
		}
	}
}
