package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/debug"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// debugClient reads the debug endpoint of a running `xds serve`.
type debugClient struct {
	base string
	http *http.Client
}

func debugFlags(fs *flag.FlagSet) func() (*debugClient, error) {
	addr := fs.String("debug-address", "127.0.0.1:19000", "address of the control plane's debug endpoint")
	tlsConfig := clientTLSFlags(fs, "debug", "the debug endpoint", "serve --debug-tls-client-ca")
	return func() (*debugClient, error) {
		c := &debugClient{base: "http://" + *addr, http: &http.Client{Timeout: 10 * time.Second}}
		cfg, err := tlsConfig()
		if err != nil || cfg == nil {
			return c, err
		}
		c.base = "https://" + *addr
		c.http.Transport = &http.Transport{TLSClientConfig: cfg}
		return c, nil
	}
}

// clientTLSFlags declares the flags of a client of a server that may
// serve TLS (--NAME-ca, --NAME-cert, --NAME-key, --NAME-server-name)
// and returns what makes their TLS configuration: nil without --NAME-ca
// (plaintext).
func clientTLSFlags(fs *flag.FlagSet, name, what, clientCA string) func() (*tls.Config, error) {
	caFile := fs.String(name+"-ca", "", what+" serves TLS: verify it with this CA (PEM)")
	certFile := fs.String(name+"-cert", "", "with --"+name+"-ca: the client certificate (PEM) to present, when "+what+" requires one ("+clientCA+")")
	keyFile := fs.String(name+"-key", "", "the key of --"+name+"-cert (PEM)")
	serverName := fs.String(name+"-server-name", "", "with --"+name+"-ca: the name "+what+"'s certificate must carry (default: the address's host)")
	return func() (*tls.Config, error) {
		if (*certFile == "") != (*keyFile == "") {
			return nil, fmt.Errorf("--%s-cert and --%s-key go together", name, name)
		}
		if *caFile == "" {
			if *certFile != "" || *serverName != "" {
				return nil, fmt.Errorf("--%s-cert and --%s-server-name need --%s-ca (%s serves TLS)", name, name, name, what)
			}
			return nil, nil
		}
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", *caFile)
		}
		cfg := &tls.Config{RootCAs: pool, ServerName: *serverName, MinVersion: tls.VersionTLS12}
		if *certFile != "" {
			pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				return nil, err
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		return cfg, nil
	}
}

// runProbe is a Kubernetes exec probe: the debug endpoint may listen on
// loopback, out of the kubelet's reach, and the image has no shell.
func runProbe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: xds probe ready|healthy [flags]\n\nExits 0 when the control plane's /readyz (ready: serving its first complete config) or /healthz (healthy: not stuck) answers 200, else 1 with the reason.\n\nFlags:")
		fs.PrintDefaults()
	}
	client := debugFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return parseExit(err)
	}
	paths := map[string]string{"ready": "/readyz", "healthy": "/healthz"}
	if len(pos) != 1 || paths[pos[0]] == "" {
		fmt.Fprintln(stderr, "xds probe takes one argument: ready or healthy")
		return 2
	}
	c, err := client()
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 2
	}
	body, err := c.get(paths[pos[0]], nil)
	if err != nil {
		// The endpoint's answer says "not ready: why" itself.
		msg := err.Error()
		if !strings.HasPrefix(msg, "not "+pos[0]) {
			msg = "not " + pos[0] + ": " + msg
		}
		fmt.Fprintln(stderr, msg)
		return 1
	}
	_, _ = stdout.Write(body)
	return 0
}

func (c *debugClient) get(path string, q url.Values) ([]byte, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := c.http.Get(u)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the debug endpoint (is `xds serve` running?): %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(strings.TrimSpace(string(body)))
	}
	return body, nil
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, stderr, "xds status [--kubeconfig FILE] [flags]", "Shows every connected xDS client and its sync state, from the control plane's debug endpoint;\nwith --kubeconfig, from every replica's (each client is connected to one), the replica named per client.")
	replicas := replicaFlags(fs)
	asJSON := fs.Bool("json", false, "print the raw /debug/syncz JSON (with --kubeconfig: one {replica, clients} per replica)")
	if code, ok := parseNoArgs(fs, args, stderr, ""); !ok {
		return code
	}
	reps, done, err := replicas()
	defer done()
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	type replicaClients struct {
		Replica string             `json:"replica"`
		Clients []debug.ClientView `json:"clients"`
	}
	var all []replicaClients
	for _, r := range reps {
		body, err := r.c.get("/debug/syncz", nil)
		if err != nil {
			fmt.Fprintf(stderr, "error: %s%v\n", replicaPrefix(r), err)
			return 1
		}
		if *asJSON && r.name == "" {
			_, _ = stdout.Write(body)
			return 0
		}
		var clients []debug.ClientView
		if err := json.Unmarshal(body, &clients); err != nil {
			fmt.Fprintf(stderr, "error: %sunexpected /debug/syncz answer: %v\n", replicaPrefix(r), err)
			return 1
		}
		all = append(all, replicaClients{r.name, clients})
	}
	if *asJSON {
		b, _ := json.MarshalIndent(all, "", "  ")
		_, _ = fmt.Fprintln(stdout, string(b))
		return 0
	}
	many := reps[0].name != ""
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if many {
		fmt.Fprint(tw, "REPLICA\t")
	}
	fmt.Fprintln(tw, "NODE\tCLUSTER\tROLE\tSTATUS\tCDS\tEDS\tLDS\tRDS\tSDS\tPROTOCOL\tCONNECTED\tERROR")
	n := 0
	for _, rc := range all {
		for _, cl := range rc.Clients {
			n++
			if many {
				fmt.Fprintf(tw, "%s\t", rc.Replica)
			}
			printClient(tw, cl)
		}
	}
	_ = tw.Flush()
	if n == 0 {
		fmt.Fprintln(stdout, "(no xDS client connected)")
	}
	for _, r := range reps {
		printWriteBack(r, stdout)
	}
	printMemberProblems(reps[0].c, stdout)
	code := 0
	for _, r := range reps {
		if c := printRefused(r, stdout, stderr); c != 0 {
			code = c
		}
	}
	return code
}

// replicaPrefix names a replica in a message, when there are several.
func replicaPrefix(r replica) string {
	if r.name == "" {
		return ""
	}
	return "replica " + r.name + ": "
}

// printClient writes one client's row (after the REPLICA column, if any).
func printClient(tw io.Writer, cl debug.ClientView) {
	proto := "sotw"
	if cl.Delta {
		proto = "delta"
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s", cl.NodeID, orDash(cl.Cluster), orDash(cl.Role), cl.Summary)
	errs := []string{}
	if cl.Error != "" {
		errs = append(errs, cl.Error)
	}
	for _, t := range []string{"cds", "eds", "lds", "rds", "sds"} {
		ts := cl.Types[debug.TypeNames[t]]
		switch {
		case ts == nil:
			fmt.Fprint(tw, "\t-")
		case ts.State == "NACKED":
			fmt.Fprintf(tw, "\tNACKED v%s", ts.Nacked)
			// The client's reason: what a NACKED row is read for.
			errs = append(errs, strings.ToUpper(t)+" v"+ts.Nacked+": "+orDash(ts.NackError))
		case ts.State == "STALE":
			fmt.Fprintf(tw, "\tSTALE v%s (acked v%s)", ts.Sent, orDash(ts.Acked))
		default:
			fmt.Fprintf(tw, "\t%s v%s", ts.State, orDash(ts.Acked))
		}
	}
	// The error goes last: however long, it leaves the columns aligned.
	fmt.Fprintf(tw, "\t%s\t%s\t%s\n", proto, time.Since(cl.ConnectedAt).Truncate(time.Second), orDash(strings.Join(errs, "; ")))
}

// printWriteBack prints one line on the write-back, when the control plane
// writes to member clusters: who leads, and what is wrong if nothing can.
func printWriteBack(r replica, stdout io.Writer) {
	body, err := r.c.get("/debug/writeback", nil)
	if err != nil {
		return // an older control plane
	}
	var wb controlplane.WriteBackStatus
	if json.Unmarshal(body, &wb) != nil || !wb.Enabled {
		return
	}
	e := wb.Election
	state := "writing (no leader election: run one replica)"
	switch {
	case e.Error != "":
		state = fmt.Sprintf("FAILING since %s ago: %s", time.Since(e.FailingSince).Truncate(time.Second), e.Error)
	case e.Enabled && e.Leading:
		state = "leading, writing (Lease " + e.Lease + ")"
	case e.Enabled:
		state = fmt.Sprintf("following %s (Lease %s)", orDash(e.Leader), e.Lease)
	}
	who := ""
	if r.name != "" {
		who = " (" + r.name + ")"
	}
	fmt.Fprintf(stdout, "\nWrite-back%s: %s; %d services pending, %d writes\n", who, state, wb.Pending, wb.Writes)
	for _, r := range wb.Retrying {
		fmt.Fprintf(stdout, "  member %s: FAILING (%d passes), retried in %s: %s\n", r.Member, r.Failures, max(time.Until(r.RetryAt), 0).Truncate(time.Second), r.LastError)
	}
}

// printMemberProblems prints what is wrong with the members' gateways:
// no usable gateway address or tunnel certificate, a tunnel Secret that
// does not parse, Services labelled as gateways outside the gateway
// namespace (/debug/clusters has all of it).
func printMemberProblems(c *debugClient, stdout io.Writer) {
	body, err := c.get("/debug/clusters", nil)
	if err != nil {
		return
	}
	var v debug.ClustersView
	if json.Unmarshal(body, &v) != nil {
		return
	}
	var lines []string
	for _, m := range v.Members {
		if m.GatewayError != "" {
			lines = append(lines, fmt.Sprintf("  %s: %s", m.Member, m.GatewayError))
		}
		for _, w := range m.GatewayWarnings {
			lines = append(lines, fmt.Sprintf("  %s: %s", m.Member, w))
		}
		if m.TunnelError != "" && !strings.Contains(m.GatewayError, m.TunnelError) {
			lines = append(lines, fmt.Sprintf("  %s: %s", m.Member, m.TunnelError))
		}
		if len(m.IgnoredGateways) > 0 {
			lines = append(lines, fmt.Sprintf("  %s: Services labelled %s outside the gateway namespace, ignored: %s", m.Member, mcs.LabelGateway, strings.Join(m.IgnoredGateways, ", ")))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(stdout, "\nMember gateways:\n%s\n", strings.Join(lines, "\n"))
	}
}

// printRefused prints the latest refused requests, if any: a client whose
// certificate does not name the node it claims is not connected, and
// this is where an operator sees why.
func printRefused(r replica, stdout, stderr io.Writer) int {
	body, err := r.c.get("/debug/refused", nil)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	var refused []cache.Refused
	if err := json.Unmarshal(body, &refused); err != nil {
		fmt.Fprintln(stderr, "error: unexpected /debug/refused answer:", err)
		return 1
	}
	if len(refused) == 0 {
		return 0
	}
	by := ""
	if r.name != "" {
		by = " by replica " + r.name
	}
	fmt.Fprintf(stdout, "\nRefused recently%s (latest last):\n", by)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCLUSTER\tROLE\tPEER\tREASON\tWHEN\tERROR")
	for _, r := range refused {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s ago\t%s\n", orDash(r.NodeID), orDash(r.Cluster), orDash(r.Role), orDash(r.Peer.Address), r.Reason, time.Since(r.At).Truncate(time.Second), r.Error)
	}
	_ = tw.Flush()
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runDump(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dump", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, stderr, "xds dump --node ID [--type cds|eds|lds|rds|sds] [flags]", "Prints what one connected xDS client is served (secrets' keys redacted), from the debug endpoint.")
	client := debugFlags(fs)
	node := fs.String("node", "", "node.id of the client, as 'xds status' lists it (required)")
	typ := fs.String("type", "", "only this type: cds, eds, lds, rds or sds (secrets with their keys redacted)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return parseExit(err)
	}
	if *node == "" {
		fmt.Fprintln(stderr, "xds dump: --node is required (a node.id, as xds status lists it)")
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "xds dump takes no arguments (got %q): name the client with --node\n", pos)
		return 2
	}
	c, err := client()
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	q := url.Values{"node": {*node}}
	if *typ != "" {
		q.Set("type", *typ)
	}
	body, err := c.get("/debug/config_dump", q)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	_, _ = stdout.Write(body)
	return 0
}

func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, stderr, "xds explain NAMESPACE/NAME [--node ID [--kubeconfig FILE]] [flags]", "Explains where a service's traffic goes and why: its import, every member's endpoints, and what each client is served.\nWith --node and --kubeconfig, the replica the node is connected to is found among them all.")
	replicas := replicaFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	node := fs.String("node", "", "explain only what this connected client (node.id, as in xds status) is served and has")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return parseExit(err)
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "xds explain takes one argument, the service as NAMESPACE/NAME (got %q)\n", pos)
		return 2
	}
	if !strings.Contains(pos[0], "/") {
		fmt.Fprintf(stderr, "xds explain %s: use NAMESPACE/NAME (default/%s, say)\n", pos[0], pos[0])
		return 2
	}
	reps, done, err := replicas()
	defer done()
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	q := url.Values{"service": {pos[0]}}
	if *node != "" {
		q.Set("node", *node)
	}
	if *asJSON {
		q.Set("format", "json")
	}
	if len(reps) > 1 && *node == "" {
		return explainEveryReplica(reps, q, *asJSON, stdout, stderr)
	}
	// Every replica explains the service alike; a node is connected to
	// one of them, which alone can say what it is served.
	var firstErr error
	for _, r := range reps {
		body, err := r.c.get("/debug/explain", q)
		if err != nil {
			if firstErr == nil || !strings.Contains(err.Error(), "no connected client has node.id") {
				firstErr = fmt.Errorf("%s%w", replicaPrefix(r), err)
			}
			if *node != "" && strings.Contains(err.Error(), "no connected client has node.id") {
				continue
			}
			break
		}
		if r.name != "" && *node != "" && !*asJSON {
			fmt.Fprintf(stdout, "(node %s is connected to replica %s)\n", *node, r.name)
		}
		_, _ = stdout.Write(body)
		return 0
	}
	if len(reps) > 1 && *node != "" && strings.Contains(firstErr.Error(), "no connected client has node.id") {
		firstErr = fmt.Errorf("no replica of the %d has a connected client with node.id %q (see xds status --kubeconfig)", len(reps), *node)
	}
	fmt.Fprintln(stderr, "error:", firstErr)
	return 1
}

// explainEveryReplica explains a service as the first replica does, with
// the clients of every replica (each replica knows only the clients
// connected to it), each named with its replica.
func explainEveryReplica(reps []replica, q url.Values, asJSON bool, stdout, stderr io.Writer) int {
	q.Set("format", "json")
	var merged debug.Explanation
	for i, r := range reps {
		body, err := r.c.get("/debug/explain", q)
		if err != nil {
			fmt.Fprintf(stderr, "error: %s%v\n", replicaPrefix(r), err)
			return 1
		}
		var e debug.Explanation
		if err := json.Unmarshal(body, &e); err != nil {
			fmt.Fprintf(stderr, "error: %s/debug/explain: %v\n", replicaPrefix(r), err)
			return 1
		}
		for j := range e.Clients {
			e.Clients[j].Replica = r.name
		}
		if i == 0 {
			merged = e
			continue
		}
		merged.Clients = append(merged.Clients, e.Clients...)
	}
	if asJSON {
		b, _ := json.MarshalIndent(merged, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	merged.WriteText(stdout)
	return 0
}

// parseInterspersed parses flags wherever they are among the arguments
// (xds explain shop/cart --debug-address ...) and returns the others.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// parseNoArgs parses the flags of a command that takes no arguments. It
// returns false, with the exit code, when the command must stop: help was
// asked for, a flag did not parse, or an argument was given (named, with
// hint after it when there is one).
func parseNoArgs(fs *flag.FlagSet, args []string, stderr io.Writer, hint string) (int, bool) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return parseExit(err), false
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "xds %s takes no arguments (got %q)%s\n", fs.Name(), pos, hint)
		return 2, false
	}
	return 0, true
}

// parseExit is the exit code of a command whose flags did not parse: 0
// when help was asked for (-h, --help: the usage was printed), else 2 (a
// usage error, already explained).
func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// setUsage gives a command's flags the usage text every command prints:
// its synopsis, what it does, its flags.
func setUsage(fs *flag.FlagSet, w io.Writer, synopsis, about string) {
	fs.Usage = func() {
		fmt.Fprintf(w, "Usage: %s\n", synopsis)
		if about != "" {
			fmt.Fprintf(w, "\n%s\n", about)
		}
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	}
}
