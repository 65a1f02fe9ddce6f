// Package translate turns the ClusterSet state computed by package mcs into
// Envoy resources as one kind of xDS client in one member cluster sees
// them (a View): an EDS Cluster and ClusterLoadAssignment per
// ServiceImport port, API listeners and routes for proxyless gRPC clients,
// and a Host-routed HTTP listener for east-west Envoy gateways.
//
// It is pure: values in, resources out, no clients, clocks or globals.
// Every Envoy name is made in names.go. Every resource is validated before
// it is returned (Validate): protoc-gen-validate rules, the embedded
// HttpConnectionManager and router, and gRPC's stricter rules; a resource
// that fails is reported, never returned.
package translate
