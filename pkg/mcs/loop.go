package mcs

import (
	"net"
	"slices"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// Loops. An endpoint of a service that is the member's own east-west
// gateway (a gateway pod, on its HTTP port or a relay port, the gateway
// Service's cluster IP, or any member's gateway address) sends the
// gateway's traffic back to itself: one request held 1,026 nested
// requests and ~2,000 sockets before Envoy's default circuit breakers
// stopped it. Any namespace user can write such an EndpointSlice (a
// selectorless Service), so these endpoints are left out of every
// service, and reported on the backend (ClusterBackend.Loops,
// /debug/mcs).

// loopAddresses are, per member (by name), the addresses that are its
// gateways: its own gateway pods and in-cluster gateway address, and
// every member's gateway IP addresses (pod IPs may repeat on other
// networks; gateway addresses are where other networks reach a member).
func loopAddresses(infos []ClusterInfo) map[string]map[string]bool {
	shared := map[string]bool{}
	for _, c := range infos {
		for _, g := range c.Gateways {
			if net.ParseIP(g.Address) != nil {
				shared[g.Address] = true
			}
		}
	}
	out := map[string]map[string]bool{}
	for _, c := range infos {
		if len(shared) == 0 && len(c.GatewayPods) == 0 && c.LocalGateway == nil {
			continue
		}
		set := make(map[string]bool, len(shared)+len(c.GatewayPods)+1)
		for a := range shared {
			set[a] = true
		}
		for _, a := range c.GatewayPods {
			set[a] = true
		}
		if c.LocalGateway != nil {
			set[c.LocalGateway.Address] = true
		}
		out[c.Member] = set
	}
	return out
}

// withoutLoops returns slices without the endpoints whose addresses are
// in gateways, and those addresses; the slices themselves when none is.
func withoutLoops(in []*Slice, gateways map[string]bool) ([]*Slice, []string) {
	if len(gateways) == 0 {
		return in, nil
	}
	var out []*Slice
	var loops []string
	for i, s := range in {
		hit := slices.ContainsFunc(s.endpoints, func(e discoveryv1.Endpoint) bool { return loopy(e.Addresses, gateways) })
		if !hit {
			if out != nil {
				out = append(out, s)
			}
			continue
		}
		if out == nil {
			out = append(make([]*Slice, 0, len(in)), in[:i]...)
		}
		c := *s
		c.endpoints = nil
		for _, e := range s.endpoints {
			if loopy(e.Addresses, gateways) {
				loops = append(loops, e.Addresses...)
				continue
			}
			c.endpoints = append(c.endpoints, e)
		}
		out = append(out, &c)
	}
	if out == nil {
		return in, nil
	}
	slices.Sort(loops)
	return out, slices.Compact(loops)
}

func loopy(addrs []string, gateways map[string]bool) bool {
	return slices.ContainsFunc(addrs, func(a string) bool { return gateways[a] })
}
