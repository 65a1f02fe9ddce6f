package controlplane

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// A member left out of the merge (a duplicate cluster ID, say) is said
// in the log, with the reason, once per change: it was only
// "members changed" in the publish line.
func TestLeftOutMemberIsLogged(t *testing.T) {
	var buf bytes.Buffer
	w := &Writer{log: slog.New(slog.NewTextHandler(&buf, nil))}
	dup := []mcs.ClusterInfo{
		{Member: "east", ID: "east"},
		{Member: "east-copy", ID: "east", Error: `cluster ID "east" is already used by member "east"`},
	}
	w.logMemberProblems(dup)
	w.logMemberProblems(dup)
	if got := strings.Count(buf.String(), "member left out of the ClusterSet"); got != 1 {
		t.Fatalf("logged %d times, want once:\n%s", got, buf.String())
	}
	for _, want := range []string{"member=east-copy", "cluster=east", `already used by member \"east\"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the line lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	w.logMemberProblems([]mcs.ClusterInfo{{Member: "east", ID: "east"}})
	w.logMemberProblems(dup)
	if got := strings.Count(buf.String(), "member left out"); got != 1 {
		t.Errorf("left out again after a fix: logged %d times, want once", got)
	}
}
