// Package clusterset installs eastwest across three real clusters
// (test/cluster) by running the install and networks guides
// (docs/install.md, docs/networks.md) as written, block by block, and
// tests what a user meets first: traffic through kube-proxy on the MCS
// EndpointSlices, clusterset.local names from each cluster's CoreDNS, the
// gateways' tunnels between networks, and no failed request while the
// control plane and the gateways are disrupted. A guide's sh block that
// the test cannot run (cert-manager, a registry) is marked so, with the
// reason, on the line before it.
//
// `make clusterset-up` runs the same install for a person and leaves it
// running (TestHelmInstall -keep); `make clusterset-down` stops it.
package clusterset
