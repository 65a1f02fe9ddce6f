// Package cluster runs real one-node Kubernetes clusters for the tests
// that need pods: each node is a network namespace of the test's
// (test/netns) with etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, containerd, kubelet and kube-proxy, pods on a CNI
// bridge, and images imported from archives the harness builds (no
// registry), and a load balancer as cloud-provider-kind is kind's (a
// LoadBalancer Service gets an address of its own from the cluster's
// LoadBalancerPool, routed from the test's namespace, or on separate
// networks the node's WAN address; kube-proxy serves it). The apiserver harness (test/kube) stays for the
// many tests that need no pods.
//
// What this machine kind needs and why (../shared/REAL-NODES.md): root;
// containerd restricts pods' oom_score_adj (root lacks CAP_SYS_RESOURCE);
// the kubelet runs on cgroup v1 with cgroupfs under a cgroup root of the
// cluster's own; the daemons enter only the node's network namespace
// (nsenter --net), so their mounts stay visible to each other; the
// apiserver reaches the kubelet by its InternalIP. Teardown stops every
// process (the containers and shims too, by the cgroups they are in),
// unmounts what is under the cluster's folder, and removes its cgroups,
// namespaces and routes, also when the test fails.
package cluster
