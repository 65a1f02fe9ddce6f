// Package envoy holds the bootstraps eastwest ships for its xDS clients:
// bootstrap.yaml for an east-west Envoy gateway and grpc-bootstrap.json for
// a proxyless gRPC client. Its test parses and validates both.
package envoy
