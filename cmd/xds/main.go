package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand of xds.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"translate": {"print the ClusterSet state (or a client's Envoy resources) computed from a YAML folder", runTranslate},
		"serve":     {"serve a ClusterSet over xDS, with the debug endpoint and metrics", runServe},
		"status":    {"show every connected xDS client's sync state (reads the debug endpoint)", runStatus},
		"dump":      {"print what one xDS client is served (reads the debug endpoint)", runDump},
		"explain":   {"explain where a service's traffic goes and why (reads the debug endpoint)", runExplain},
		"probe":     {"exit 0 when the control plane is ready (or healthy): a Kubernetes exec probe", runProbe},
		"members":   {"show every member cluster: cluster ID, merged or left out, connection, network, gateways, problems (reads the debug endpoint)", runMembers},
		"watch":     {"connect as an xDS client of a member cluster and print endpoints as they change", runWatch},
		"version":   {"print the version, source revision and platform", runVersion},

		"create-remote-secret": {"print the Secret that adds a member cluster (its ServiceAccount's kubeconfig)", runCreateRemoteSecret},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		return runVersion(args[1:], stdout, stderr)
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "xds: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "xds is the eastwest control plane for traffic between the clusters of a ClusterSet.")
	fmt.Fprintln(w, "\nUsage: xds COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-22s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'xds COMMAND -h' for a command's flags.")
}
