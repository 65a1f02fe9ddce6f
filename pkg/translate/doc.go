// Package translate will turn the ClusterSet state computed by package mcs
// (and, later, Gateway API routes) into Envoy clusters, endpoints,
// listeners and routes, as seen from one xDS client's member cluster. It is
// pure: values in, Envoy resources out, with every Envoy name made in one
// file.
//
// It holds no code yet: the translation arrives with the xDS issue, on top
// of the mcs.State and mcs.ServiceState values this repository's MCS core
// produces.
package translate
