package mcs

import (
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Relay ports. Pods without a proxy reach a ServiceImport through
// kube-proxy and the derived Service's EndpointSlices; the endpoints of a
// member on another network are not routable from them. Instead the
// slices list the importing member's own east-west gateway pods on the
// port's relay port, where the gateway's relay listener sends the
// connection to the port's cluster (the usual priorities: its own member
// first, then the others, through tunnels to other networks).
//
// Every TCP port of every import has a relay port in
// [RelayPortMin, RelayPortMax], the same in every member: the first free
// one from a hash of the service and port. It stays while the port is
// imported, so a relay port moves only when its first choice was taken
// (by a port imported first) and the control plane restarts. The range
// holds 10,000 ports, below Linux's ephemeral ports (32768 on): in a
// ClusterSet of more TCP import ports, those imported last have none
// (RelayPort 0), and their pods without a proxy do not reach other
// networks.
const (
	RelayPortMin = 20000
	RelayPortMax = 29999
	// LabelRelay marks the MCS EndpointSlices that list a member's own
	// gateway pods on relay ports.
	LabelRelay = "eastwest.io/relay"
)

type relayKey struct {
	key  ServiceKey
	port int32
}

// relays are the relay ports allocated.
type relays struct {
	byPort map[relayKey]int32
	used   map[int32]bool
}

func newRelays() relays { return relays{byPort: map[relayKey]int32{}, used: map[int32]bool{}} }

// update gives a service's new import ports their relay ports (kept from
// before, or allocated) and frees those of the ports it no longer has.
func (r relays) update(key ServiceKey, old, st *ServiceState) {
	var keep []int32
	if st != nil && st.Import != nil {
		for i := range st.Import.Ports {
			p := &st.Import.Ports[i]
			if p.Protocol != corev1.ProtocolTCP {
				continue
			}
			p.RelayPort = r.allocate(relayKey{key, p.Port})
			keep = append(keep, p.Port)
		}
	}
	if old != nil && old.Import != nil {
		for _, p := range old.Import.Ports {
			if rk := (relayKey{key, p.Port}); !slices.Contains(keep, p.Port) && r.byPort[rk] != 0 {
				delete(r.used, r.byPort[rk])
				delete(r.byPort, rk)
			}
		}
	}
}

func (r relays) allocate(rk relayKey) int32 {
	if n, ok := r.byPort[rk]; ok {
		return n
	}
	const size = RelayPortMax - RelayPortMin + 1
	if len(r.used) >= size {
		return 0 // every relay port taken: the port has none
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(rk.key.Namespace + "/" + rk.key.Name + ":" + strconv.Itoa(int(rk.port))))
	first := int32(h.Sum32() % size) //nolint:gosec // less than size
	for i := range int32(size) {
		n := RelayPortMin + (first+i)%size
		if !r.used[n] {
			r.used[n], r.byPort[rk] = true, n
			return n
		}
	}
	return 0
}

// relaySlice is the MCS EndpointSlice of cluster c for a service whose
// endpoints in other networks its pods reach through its gateways (nil
// when none does): c's gateway pods on the relay ports of the import ports
// those members serve.
func relaySlice(st *ServiceState, c ClusterInfo, relayed map[ClusterID]bool) *discoveryv1.EndpointSlice {
	if len(relayed) == 0 || len(c.GatewayPods) == 0 {
		return nil
	}
	var ports []discoveryv1.EndpointPort
	for _, p := range st.Import.Ports {
		if p.RelayPort == 0 || !slices.ContainsFunc(p.Clusters, func(id ClusterID) bool { return relayed[id] }) {
			continue
		}
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), Port: ptr.To(p.RelayPort), AppProtocol: p.AppProtocol})
	}
	if len(ports) == 0 {
		return nil
	}
	var eps []discoveryv1.Endpoint
	for _, ip := range c.GatewayPods {
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	addressType := discoveryv1.AddressTypeIPv4
	if strings.Contains(c.GatewayPods[0], ":") {
		addressType = discoveryv1.AddressTypeIPv6
	}
	return &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: discoveryv1.SchemeGroupVersion.String(), Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: st.Key.Namespace,
			Name:      mcsSliceName(st.Key, c.ID, "relay", 0),
			Labels: map[string]string{
				mcsv1b1.LabelServiceName:   st.Key.Name,
				mcsv1b1.LabelSourceCluster: string(c.ID),
				discoveryv1.LabelManagedBy: ControllerName,
				LabelRelay:                 "true",
			},
		},
		AddressType: addressType,
		Ports:       ports,
		Endpoints:   eps,
	}
}
