// Package kube starts real member clusters for tests: for each, an etcd
// and a kube-apiserver on loopback with free ports, the MCS CRDs
// (sigs.k8s.io/mcs-api), the About API ClusterProperty CRD and the Gateway
// API standard CRDs installed and Established, and a kubeconfig and
// rest.Config with admin rights. Every process a test starts is stopped
// when the test ends, failed or not. A cluster's apiserver can be stopped
// and started again (same port, same data) to simulate an outage.
//
// The binaries come from test/tools/build.sh (`make kube-bins`, which
// `make test` runs): EASTWEST_KUBE_BIN names their folder, by default
// .cache/k8s at the top of the repository.
package kube
