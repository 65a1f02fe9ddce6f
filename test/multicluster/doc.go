// Package multicluster tests eastwest as the MCS controller of real
// member clusters: three kube-apiservers (test/kube), the control plane
// reading them through kubeconfig files and writing ServiceImports,
// EndpointSlices and ServiceExport conditions back, one test per
// behaviour of the mcs-api conformance suite's API-level specs.
package multicluster
