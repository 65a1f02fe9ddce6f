// Package envoy holds the tests in which a real Envoy (1.40, the release
// our protos come from) is the client: every shipped bootstrap passes
// `envoy --mode validate`, and every Envoy-facing view eastwest serves
// (east-west gateways, Gateway API Gateways) is accepted by Envoy over
// SotW and delta ADS, with the resources we sent in its config dump.
package envoy
