package cluster

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// LoadBalancerIP is the address the cluster's load balancer gives every
// LoadBalancer Service: the node's WAN address on separate networks
// (where other networks reach it), else the node's address.
func (c *Cluster) LoadBalancerIP() string {
	if c.WAN != "" {
		return c.WAN
	}
	return c.Node.NSIP
}

// serveLoadBalancers is the cluster's cloud load balancer, as
// cloud-provider-kind is kind's: every Service of type LoadBalancer gets
// LoadBalancerIP as its ingress, and kube-proxy sends what reaches that
// address on the Service's ports to its endpoints (one node: the node is
// the load balancer). So a chart's LoadBalancer Services work here as
// installed, with no externalIPs. It runs until ctx ends, looking every
// second (a poll, not a watch: a handful of Services, and no watch to
// resume).
func (c *Cluster) serveLoadBalancers(ctx context.Context) {
	ip := c.LoadBalancerIP()
	wait.Until(func() {
		list, err := c.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return
		}
		for i := range list.Items {
			s := &list.Items[i]
			if s.Spec.Type != corev1.ServiceTypeLoadBalancer || len(s.Status.LoadBalancer.Ingress) > 0 {
				continue
			}
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
			// A conflict is retried on the next look.
			_, _ = c.Client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{})
		}
	}, time.Second, ctx.Done())
}
