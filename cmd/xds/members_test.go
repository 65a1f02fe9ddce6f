package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/debug"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
)

// `xds members` is one line per member that says what an operator asks
// first: is it merged, is it connected, where are its gateways, what is
// wrong; a member not synced yet is listed from its connection alone;
// then the members' properties that cluster selectors match.
func TestMembersTable(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	v := debug.ClustersView{
		Members: []mcs.ClusterInfo{
			{Member: "east", ID: "east", ClusterSet: "prod", Network: "one", Gateways: []mcs.GatewayAddress{{Address: "192.0.2.10", Port: 15443}},
				Properties: map[string]string{"cluster.clusterset.k8s.io": "east", "region.topology.k8s.io": "us-east", "jurisdiction.eastwest.io": "US"}},
			{Member: "east-copy", ID: "east", Error: `cluster ID "east" is already used by member "east"`},
			{Member: "west", ID: "west", ClusterSet: "prod", Network: "two", GatewayError: "network one has no east-west gateway address (no Service)",
				PropertyWarnings: []string{"property big.example.com left out: its value is 2000 bytes, over 1024"}},
		},
		Connections: []source.ClusterStatus{
			{Member: "east", State: "synced", Since: now.Add(-90 * time.Second)},
			{Member: "west", State: "failing", LastError: "connection refused", Failures: 3, Since: now.Add(-10 * time.Second)},
			{Member: "north", State: "connecting", LastError: "x509: certificate signed by unknown authority", Since: now.Add(-5 * time.Second)},
		},
		Problems: []string{"members/east/bad.yaml:3: document 2: not valid YAML"},
	}
	var out bytes.Buffer
	printMembers(&out, v, now)
	for _, want := range []string{
		"east       east        prod        yes      synced 1m30s",
		"192.0.2.10:15443",
		`east-copy  east        -           no       -`,
		`cluster ID "east" is already used by member "east"`,
		"west       west        prod        yes      failing 10s (3 failures)",
		"connection refused; network one has no east-west gateway address",
		"north      -           -           not yet  connecting 5s",
		"x509: certificate signed by unknown authority",
		"Problems in the input (1):\n  members/east/bad.yaml:3",
		"Properties:\n  east: jurisdiction.eastwest.io=US, region.topology.k8s.io=us-east\n",
		"property big.example.com left out",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("want %q in:\n%s", want, out.String())
		}
	}
}

// A NACKED client's row says why, in the ERROR column (docs/troubleshooting.md
// promises it): the type, the version and the client's error_detail.
func TestStatusRowSaysWhyNacked(t *testing.T) {
	cl := debug.ClientView{Client: cache.Client{NodeID: "gw", Cluster: "west", Role: "gateway", ConnectedAt: time.Now(),
		Types: map[string]*cache.TypeSync{debug.TypeNames["lds"]: {State: cache.Nacked, Nacked: "4", NackError: "unknown cluster tunnel:x"}}},
		Summary: cache.Nacked}
	var out bytes.Buffer
	printClient(&out, cl)
	if !strings.Contains(out.String(), "NACKED v4") || !strings.Contains(out.String(), "LDS v4: unknown cluster tunnel:x") {
		t.Errorf("row %q", out.String())
	}
}
