// Package provision is how eastwest deploys the Envoys of a Gateway API
// Gateway of its class (GEP-1762, in-cluster Gateway deployments): the
// GatewayParameters resource (eastwest.io/v1alpha1) a GatewayClass's or a
// Gateway's parametersRef names, its defaults and validation, and Render,
// which computes, purely, the objects one Gateway's Envoys need in its
// namespace: a ServiceAccount, the bootstrap ConfigMap (mutual-TLS ADS to
// eastwest, node role gateway-api), a Deployment, a Service in front of
// it and a PodDisruptionBudget, each named <gateway>-<class>, labelled
// gateway.networking.k8s.io/gateway-name and -class-name and owned by
// the Gateway, with the Gateway's spec.infrastructure labels and
// annotations.
//
// The write-back leader of the Gateway's member cluster applies what
// Render returns and deletes what it no longer returns; it depends on
// nothing of eastwest's but pkg/identity and the node contract's names.
package provision
