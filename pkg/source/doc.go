// Package source turns the places member clusters' objects come from into
// mcs.Events: a folder of Kubernetes YAML (one subfolder per member
// cluster), and, later, live Kubernetes clusters.
//
// A source never stops on bad input: a file that does not parse, an object
// of an unknown kind or an invalid object is reported as a Problem naming
// the file, the document and the reason, and everything else is served.
package source
