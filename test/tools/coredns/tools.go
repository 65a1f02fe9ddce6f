//go:build tools

// The stock CoreDNS binary, every plugin included, as clusters run it.
package tools

import _ "github.com/coredns/coredns"
