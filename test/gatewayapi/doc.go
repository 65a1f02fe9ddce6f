// Package gatewayapi tests eastwest's Gateway API implementation on real
// one-node clusters with real pods (test/cluster): Gateways whose Envoys
// eastwest deploys itself (GEP-1762), carrying traffic to the cluster's
// pods.
package gatewayapi
