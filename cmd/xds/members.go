package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/debug"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
)

// runMembers prints the ClusterSet's members as the control plane sees
// them, one line each (as `cilium clustermesh status` does): its cluster
// ID, whether it takes part in the merge, its connection, its network and
// east-west gateways, and what is wrong with it.
func runMembers(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("members", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, stderr, "xds members [--kubeconfig FILE] [flags]", "Prints every member cluster: its cluster ID and ClusterSet, whether it takes part in the merge, its connection, network and east-west gateways, and what is wrong with it (from /debug/clusters).")
	replicas := replicaFlags(fs)
	asJSON := fs.Bool("json", false, "print the raw /debug/clusters JSON")
	if code, ok := parseNoArgs(fs, args, stderr, ""); !ok {
		return code
	}
	// Every replica reads every member alike: one is asked.
	reps, done, err := replicas()
	defer done()
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	body, err := reps[0].c.get("/debug/clusters", nil)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	if *asJSON {
		_, _ = stdout.Write(body)
		return 0
	}
	var v debug.ClustersView
	if err := json.Unmarshal(body, &v); err != nil {
		fmt.Fprintln(stderr, "error: unexpected /debug/clusters answer:", err)
		return 1
	}
	printMembers(stdout, v, time.Now())
	return 0
}

// printMembers writes the members' table and the folder's problems.
func printMembers(w io.Writer, v debug.ClustersView, now time.Time) {
	conns := map[string]source.ClusterStatus{}
	for _, c := range v.Connections {
		conns[c.Member] = c
	}
	if len(v.Members) == 0 && len(v.Connections) == 0 {
		fmt.Fprintln(w, "(no member clusters)")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tCLUSTER ID\tCLUSTERSET\tMERGED\tCONNECTION\tNETWORK\tGATEWAYS\tPROBLEM")
	seen := map[string]bool{}
	for _, m := range v.Members {
		seen[m.Member] = true
		merged := "yes"
		var problems []string
		if m.Error != "" {
			merged = "no"
			problems = append(problems, m.Error)
		}
		conn := "-"
		if c, ok := conns[m.Member]; ok {
			conn = connection(c, now)
			if c.LastError != "" && c.State != "synced" {
				problems = append(problems, c.LastError)
			}
		}
		for _, p := range []string{m.GatewayError, m.TunnelError} {
			if p != "" {
				problems = append(problems, p)
			}
		}
		problems = append(problems, m.PropertyWarnings...)
		if p := m.Profile; p != nil && !p.Healthy() {
			// Shown, never acted on: the member stays in the merge.
			problems = append(problems, fmt.Sprintf("ClusterProfile %s: ControlPlaneHealthy %s %s", p.Name, p.Status, strings.TrimSpace(p.Reason+" "+p.Message)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Member, orDash(string(m.ID)), orDash(m.ClusterSet), merged, conn,
			mcs.NetworkName(m.Network), gateways(m), orDash(strings.Join(problems, "; ")))
	}
	// Members that have not delivered their first state are connections
	// only.
	var waiting []string
	for name := range conns {
		if !seen[name] {
			waiting = append(waiting, name)
		}
	}
	slices.Sort(waiting)
	for _, name := range waiting {
		c := conns[name]
		fmt.Fprintf(tw, "%s\t-\t-\tnot yet\t%s\t-\t-\t%s\n", name, connection(c, now), orDash(c.LastError))
	}
	_ = tw.Flush()
	// The properties cluster selectors match (docs/traffic.md), beyond
	// the table's ID, ClusterSet and network.
	var props []string
	for _, m := range v.Members {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(m.Properties)) {
			if k != about.PropertyClusterID && k != about.PropertyClusterSet && k != about.PropertyNetwork {
				kv = append(kv, k+"="+m.Properties[k])
			}
		}
		if len(kv) > 0 {
			props = append(props, fmt.Sprintf("  %s: %s", m.Member, strings.Join(kv, ", ")))
		}
	}
	if len(props) > 0 {
		fmt.Fprintf(w, "\nProperties:\n%s\n", strings.Join(props, "\n"))
	}
	if len(v.Problems) > 0 {
		fmt.Fprintf(w, "\nProblems in the input (%d):\n", len(v.Problems))
		for _, p := range v.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}

// connection is a member's connection state and for how long it holds.
func connection(c source.ClusterStatus, now time.Time) string {
	s := c.State
	if !c.Since.IsZero() {
		s += " " + now.Sub(c.Since).Round(time.Second).String()
	}
	if c.Failures > 0 && c.State != "synced" {
		s += fmt.Sprintf(" (%d failures)", c.Failures)
	}
	return s
}

// gateways is a member's east-west gateway addresses, or "-".
func gateways(m mcs.ClusterInfo) string {
	var out []string
	for _, g := range m.Gateways {
		out = append(out, net.JoinHostPort(g.Address, strconv.Itoa(int(g.Port))))
	}
	return orDash(strings.Join(out, ","))
}
