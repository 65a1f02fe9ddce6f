// Package source turns the places member clusters' objects come from into
// events: a folder of Kubernetes YAML (one subfolder per member cluster,
// watched), and live member clusters (informers per member, from a
// folder of kubeconfigs or remote Secrets, each with its connection
// lifecycle). It reads MCS inputs, Gateway API objects and TLS Secrets
// alike, the kinds listed in one table (event.Kinds).
//
// A source never stops on bad input: a file that does not parse, an object
// of an unknown kind or an invalid object is reported as a Problem naming
// the file, the document and the reason, and everything else is served.
package source
