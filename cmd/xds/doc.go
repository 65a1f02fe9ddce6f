// Command xds is eastwest's command line: the control plane itself and the
// tools that inspect what it computes.
//
//	xds translate --dir DIR    print the ClusterSet state computed from a YAML folder
//
// Run `xds help` for the list of commands and `xds COMMAND -h` for flags.
package main
