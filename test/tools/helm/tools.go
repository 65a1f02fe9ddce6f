//go:build tools

// The helm command, as released.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
