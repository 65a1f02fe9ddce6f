package assemble_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/eastwest-dev/eastwest/pkg/assemble"
)

// zoneViewNames are the zone views the tiers case's clients ask for.
func zoneViewNames(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/tiers.in/views")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(raw))
}

// A zone view is made when a client asks for it (once its member is a
// member), and then kept up to date like any view: the tiers case built up
// and torn down one file at a time, the zone views asked for with every
// step's changes and after them (as the Writer does when the members
// change), gives after each step exactly what a new assembler asked for
// them gives. A Flush that makes zone views translates every service for
// them alone, and for the other views only what changed.
func TestZoneViewsIncrementalEqualsFromScratch(t *testing.T) {
	names := zoneViewNames(t)
	want := func(a *assemble.Assembler) {
		for _, n := range names {
			if _, err := a.WantView(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	f := newFolder(t)
	scratch := func() *assemble.Assembler {
		a := fromScratch(t, f.dir)
		want(a)
		a.Flush()
		return a
	}
	files := goldenCases(t)["tiers"]
	check := func(what string) {
		// The views asked for with the step's events (made in the same
		// Flush when their member already is one), then again after it.
		evs, _, err := f.src.Scan()
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			_ = f.asm.Apply(ev)
		}
		want(f.asm)
		f.asm.Flush()
		want(f.asm)
		f.asm.Flush()
		if d := same(f.asm, scratch()); d != "" {
			t.Fatalf("%s: %s", what, d)
		}
	}
	for i, in := range files {
		f.put(in)
		check(fmt.Sprintf("after adding %d of %d files (%s/%s)", i+1, len(files), in.member, filepath.Base(in.path)))
	}
	if got := viewNames(f.asm.Views()); !slices.Contains(got, "use1/client@us-east-1a") || !slices.Contains(got, "use1/gateway@us-east-1a") {
		t.Fatalf("views %v lack the zone views asked for", got)
	}
	for i, in := range files {
		f.remove(in)
		check(fmt.Sprintf("after removing %d of %d files (%s/%s)", i+1, len(files), in.member, filepath.Base(in.path)))
	}
}

// What WantView makes: zone views of members' client and gateway roles
// only, each once, at most MaxZoneViews per member (the next is refused
// with the reason); other names make nothing.
func TestWantView(t *testing.T) {
	a := fromScratch(t, "../../testdata/tiers.in")
	for _, tc := range []struct {
		name string
		made bool
	}{
		{"use1/client@us-east-1a", true},
		{"use1/client@us-east-1a", false},       // already made
		{"use1/client", false},                  // not a zone view
		{"nobody/client@z", false},              // not a member
		{"use1/gateway-api/shop/public", false}, // Gateway API views have no zones
		{"use1/gateway-api@z", false},
		{"use1/client@", false},
	} {
		made, err := a.WantView(tc.name)
		if made != tc.made || err != nil {
			t.Errorf("WantView(%q) = %v, %v; want %v", tc.name, made, err, tc.made)
		}
	}
	for i := 1; i < assemble.MaxZoneViews; i++ {
		if made, err := a.WantView(fmt.Sprintf("use1/gateway@z%d", i)); !made || err != nil {
			t.Fatalf("zone view %d of %d not made: %v", i+1, assemble.MaxZoneViews, err)
		}
	}
	made, err := a.WantView("use1/gateway@one-too-many")
	var full *assemble.ZoneViewsFull
	if made || !errors.As(err, &full) || full.Member != "use1" {
		t.Errorf("zone view over the bound: %v, %v; want refused", made, err)
	}
	if made, err := a.WantView("use2/client@us-east-1a"); !made || err != nil {
		t.Errorf("another member's zone view: %v, %v; the bound is per member", made, err)
	}
}
