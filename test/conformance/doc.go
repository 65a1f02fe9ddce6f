// Package conformance runs the upstream Multi-Cluster Services API
// conformance suite (sigs.k8s.io/mcs-api/conformance), unmodified, against
// eastwest on real one-node clusters with real pods (test/cluster).
//
// The suite is vendored under mcs-api/ with its license and a SHA256SUMS
// the test checks before it runs, so an edit to it fails the run. It is a
// module of its own that replaces sigs.k8s.io/mcs-api with its parent
// folder (upstream it lives inside the mcs-api repository, untagged, so it
// is not on the module proxy); the test assembles that parent from the
// released mcs-api module eastwest is built with (the module proxy's
// sigs.k8s.io/mcs-api, the version in go.mod) in a temporary folder and
// compiles the suite there.
//
// The images it names (alpine/socat, nicolaka/netshoot) are built locally
// on the Debian test layer under those names (test/cluster.DebianImages):
// nothing is pulled.
//
// `make conformance-report` runs it and writes the report the suite makes
// (HTML and YAML, as the SIG's conformance program asks) to
// docs/conformance/.
package conformance
