// Package cptest starts the real control plane for tests: the same App
// `xds serve` runs, on loopback with free ports, stopped when the test ends.
package cptest
