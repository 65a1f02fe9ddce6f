package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// lbPoolPrefix is where the clusters' load balancer pools are: a /24 each,
// the first one free on the machine (its route from the test's
// namespace is the claim, so that test processes side by side never
// share one).
const lbPoolPrefix = "10.217."

// claimLoadBalancerPool routes the first free /24 of 10.217.0.0/16 to the
// node: the addresses its load balancer gives out, reachable from the
// test's namespace (the node's kube-proxy serves them).
func (c *Cluster) claimLoadBalancerPool() error {
	for k := range 256 {
		pool := fmt.Sprintf("%s%d.0/24", lbPoolPrefix, k)
		// add, not replace: an existing route is another cluster's pool.
		if err := exec.Command("ip", "route", "add", pool, "via", c.Node.NSIP).Run(); err == nil { //nolint:gosec // the harness's addresses
			c.LoadBalancerPool = netip.MustParsePrefix(pool)
			return nil
		}
	}
	return fmt.Errorf("%s: no free load balancer pool in %s0.0/16", c.Name, lbPoolPrefix)
}

// serveLoadBalancers is the cluster's cloud load balancer, as
// cloud-provider-kind is kind's: every Service of type LoadBalancer gets
// an ingress address, and kube-proxy sends what reaches that address on
// the Service's ports to its endpoints (one node: the node is the load
// balancer). On separate networks the address is the node's WAN address,
// where the other networks reach it (Services share it, so their ports
// must differ); else
// each Service gets the lowest free address of LoadBalancerPool (so that
// Gateways listening on the same port, as the Gateway API conformance
// suite's do, do not collide), given back when the Service goes. So a
// chart's LoadBalancer Services work here as installed, with no
// externalIPs. It runs until ctx ends, looking every second (a poll, not
// a watch: a handful of Services, and no watch to resume).
func (c *Cluster) serveLoadBalancers(ctx context.Context) {
	wait.Until(func() {
		list, err := c.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return
		}
		used := map[string]bool{}
		for _, s := range list.Items {
			for _, in := range s.Status.LoadBalancer.Ingress {
				used[in.IP] = true
			}
		}
		for i := range list.Items {
			s := &list.Items[i]
			if s.Spec.Type != corev1.ServiceTypeLoadBalancer || len(s.Status.LoadBalancer.Ingress) > 0 {
				continue
			}
			ip := c.WAN
			if ip == "" {
				if ip = c.freeLoadBalancerIP(used); ip == "" {
					continue // full: wait for a Service to go
				}
				used[ip] = true
			}
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: new(corev1.LoadBalancerIPModeVIP)}}
			// A conflict is retried on the next look.
			_, _ = c.Client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{})
		}
	}, time.Second, ctx.Done())
}

// freeLoadBalancerIP is the pool's lowest address (from .1) not in used.
func (c *Cluster) freeLoadBalancerIP(used map[string]bool) string {
	if !c.LoadBalancerPool.IsValid() {
		return ""
	}
	for a := c.LoadBalancerPool.Addr().Next(); c.LoadBalancerPool.Contains(a); a = a.Next() {
		if s := a.String(); !used[s] && !strings.HasSuffix(s, ".255") {
			return s
		}
	}
	return ""
}
