// Package cache is eastwest's xDS cache and server. The cache implements
// go-control-plane's cache interface (CreateWatch, CreateDeltaWatch,
// Fetch); go-control-plane's server speaks delta and unary Fetch, and
// Server (sotw.go) the state-of-the-world streams, where every ACK repeats
// the whole subscription: an ACK whose names are the bytes of the previous
// request costs one comparison. Codec (wire.go) writes large responses
// from the resources' shared bytes instead of a copy per client. The
// package owns the rest:
//
//   - Resources live in views (one per member cluster and client role),
//     keyed by type and name, each with a version derived from its content.
//     A resource is marshalled once per version, and the bytes are shared by
//     every client that gets it.
//
//   - State-of-the-world and delta, wildcard and named subscriptions. A
//     client that subscribes to a subset of the names is answered.
//
//   - An update wakes only the watches subscribed to what changed. For
//     EDS and RDS a SotW client gets only the changed resources; for LDS
//     and CDS the protocol needs the whole subscribed set, from shared bytes.
//
//   - A NACKed version is not sent again until the resource changes: the
//     server records what it sent whether or not the client accepts it, and
//     the cache answers only differences from that.
//
//   - No client can hold it up or make it hold anything it chooses: only
//     the five served types are accepted (so a stream has at most five
//     watches), subscriptions are bounded (limits.go), a response is sent
//     only when the stream's channel has room (never waiting while the
//     lock is held; a full stream is retried), and the state of a claimed
//     view that is not one goes with its last watch.
//
// Tracker (the server's callbacks) keeps every client's sync state for
// debugging: connected since, and per type the version sent, acknowledged
// and rejected, with the message and the time. It is also where requests
// are checked before the cache sees them: served types, subscription
// limits, a node that does not change within its stream, and the
// stream's Authorizer (the identity its certificate proves); it refuses
// with a gRPC status and remembers the latest refusals.
//
// One concern per file, and each seam a type: the SotW server reaches
// the cache through SotWWatcher (CreateSotWWatch) only, go-control-plane's
// delta server through its cache interface, and admission (Tracker) sits
// in the servers' callbacks:
//
//	cache.go     the views' resources: publishing (Apply, SetViews),
//	             marshalling once, versions and change logs
//	watch.go     the clients' watches: indexes by name, waking only the
//	             watches a change concerns, retries of full streams
//	response.go  the SotW and delta responses made from shared bytes
//	read.go      what the debug endpoint reads (Resources, Has)
//	sotw.go      the state-of-the-world stream server
//	wire.go      the codec that writes responses from shared bytes
//	tracker.go   the admission layer and every client's sync state
//	limits.go    what a request may ask (types, names, sizes)
package cache
