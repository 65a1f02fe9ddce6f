// Package identity is the one parser and printer of eastwest's SPIFFE
// identities: who an xDS client or an east-west gateway is, as its
// certificate says in a URI SAN,
//
//	spiffe://<trust domain>/clusterset/<clusterset>/cluster/<cluster ID>/role/<role>
//	spiffe://<trust domain>/clusterset/<clusterset>/cluster/<cluster ID>/role/gateway-api/gateway/<namespace>/<name>
//
// Parsing follows the SPIFFE ID specification (go-spiffe's spiffeid): a
// lower-case "spiffe" scheme and trust domain, no user info, port, query
// or fragment, no percent-encoding, no empty, "." or ".." segments. An
// identity that is not a valid SPIFFE ID, or not of the shape above, is
// no identity at all. Every check of an identity (the xDS authorization,
// the Envoy tunnel matchers) starts from the parsed form, so the two can
// never read one certificate differently.
package identity
