package translate

import (
	"testing"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
)

// A RequestRedirect's port follows the spec: the filter's port, else the
// well-known port of the filter's scheme (Envoy's own rule when the scheme
// changes), else the listener's port, which Envoy would not know (it
// keeps the Host header's): a listener on 8080 redirects to :8080.
func TestRedirectPort(t *testing.T) {
	for name, c := range map[string]struct {
		rd                   gatewayapi.Redirect
		listener, defaultFor uint32
		want                 uint32
	}{
		"the filter's port":                      {gatewayapi.Redirect{Port: 8443}, 8080, 80, 8443},
		"a scheme: Envoy's well-known port":      {gatewayapi.Redirect{Scheme: "https"}, 8080, 80, 0},
		"neither, on 8080: the listener's":       {gatewayapi.Redirect{Hostname: "example.org"}, 8080, 80, 8080},
		"neither, on 80: none written":           {gatewayapi.Redirect{}, 80, 80, 0},
		"neither, HTTPS on 8443: the listener's": {gatewayapi.Redirect{}, 8443, 443, 8443},
	} {
		t.Run(name, func(t *testing.T) {
			got := redirect(&c.rd, routeOptions{}.onPort(c.listener, c.defaultFor))
			if got.PortRedirect != c.want {
				t.Errorf("port_redirect %d, want %d", got.PortRedirect, c.want)
			}
		})
	}
}
