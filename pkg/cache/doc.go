// Package cache will be eastwest's xDS cache: resources keyed by type and
// name with a content-derived version each, marshalled once and shared by
// every client, with state-of-the-world and delta watches that wake only
// the clients subscribed to what changed, NACKs recorded per client, and
// per-client sync state for debugging. It implements go-control-plane's
// cache interface so that its server handles the wire protocol.
//
// It holds no code yet: it arrives with the xDS issue.
package cache
