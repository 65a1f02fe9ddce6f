// Package resource is the one shape of what eastwest serves, shared by
// every layer that handles it: pkg/translate makes Resources,
// pkg/assemble orders them into Updates, and pkg/cache applies those
// Updates as they come, with no copy in between. It depends on nothing
// of eastwest.
package resource

import "google.golang.org/protobuf/proto"

// Resource is one Envoy resource of one xDS type.
type Resource struct {
	Type    string // a resourcev3 type URL
	Name    string
	Message proto.Message
}

// Update changes one type of one view: Set adds or replaces resources
// (each of that Type), Delete removes names.
type Update struct {
	View   string
	Type   string
	Set    []Resource
	Delete []string
}
