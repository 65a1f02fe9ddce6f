// Package envoytest runs real Envoy processes for tests: Envoy 1.40 (the
// binary test/tools/envoy.sh installs into .cache/envoy, or ENVOY_BIN),
// started from the bootstraps eastwest ships in deploy/envoy with only
// what a test must change (node, control plane address, admin port,
// certificates, delta or SotW), and stopped when the test ends, however
// it ends.
package envoytest
