// Package kubernetes holds the Kubernetes manifests eastwest ships (the
// RBAC a member cluster grants, the control plane's Deployment, a
// Gateway's Envoys, the xDS certificates) and the tests that check them.
package kubernetes
