// Command xds is eastwest's command line: the control plane itself and the
// tools that inspect what it computes.
//
//	xds serve --dir DIR | --kubeconfig-dir DIR | --kubeconfig FILE   the control plane
//	xds translate --dir DIR                                         the state (or a client's Envoy resources) from a YAML folder
//	xds status | dump | explain                                     read a running control plane's debug endpoint
//	xds create-remote-secret                                        the Secret that adds a member cluster
//
// Run `xds help` for the list of commands and `xds COMMAND -h` for flags.
package main
