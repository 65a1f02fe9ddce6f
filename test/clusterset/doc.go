// Package clusterset installs eastwest with its Helm chart across three
// real clusters (test/cluster) as docs/install.md says, and tests what a
// user meets first: traffic through kube-proxy on the MCS EndpointSlices,
// clusterset.local names from each cluster's CoreDNS, the gateways'
// tunnels between networks, and no failed request while the control plane
// and the gateways are disrupted.
//
// `make clusterset-up` runs the same install for a person and leaves it
// running (TestHelmInstall -keep); `make clusterset-down` stops it.
package clusterset
