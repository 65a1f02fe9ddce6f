// Package helm holds the tests of the Helm chart in eastwest/: helm lint,
// helm template with the default and a production values file, the plain
// manifests of deploy/kubernetes rendered from it (one source), and every
// rendered object created in a real apiserver.
package helm
