// Package manifest decodes multi-document Kubernetes YAML (shipped
// manifests, helm template output) into objects, for the tests that check
// or apply them.
package manifest
