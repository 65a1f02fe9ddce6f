// Package netns gives tests network namespaces of their own (Linux, root,
// iproute2): a namespace joined to the test's by a veth pair, with any
// addresses the test wants inside it, listeners opened inside it from the
// test process, and commands run inside it. Everything it creates is
// removed when the test ends. Kubernetes refuses loopback addresses in
// EndpointSlices; a namespace's own addresses stand for pods instead.
package netns
