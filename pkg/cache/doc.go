// Package cache is eastwest's xDS cache. It implements go-control-plane's
// cache interface (CreateWatch, CreateDeltaWatch, Fetch) so that its server
// (pkg/server/v3) speaks the wire protocol, and owns the rest:
//
//   - Resources live in views (one per member cluster and client role),
//     keyed by type and name, each with a version derived from its content.
//     A resource is marshalled once per version, and the bytes are shared by
//     every client that gets it.
//   - State-of-the-world and delta, wildcard and named subscriptions. A
//     client that subscribes to a subset of the names is answered.
//   - An update wakes only the watches subscribed to what changed. For
//     EDS and RDS a SotW client gets only the changed resources; for LDS
//     and CDS the protocol needs the whole subscribed set, from shared bytes.
//   - A NACKed version is not sent again until the resource changes: the
//     server records what it sent whether or not the client accepts it, and
//     the cache answers only differences from that.
//
// Tracker (the server's callbacks) keeps every client's sync state for
// debugging: connected since, and per type the version sent, acknowledged
// and rejected, with the message and the time.
package cache
