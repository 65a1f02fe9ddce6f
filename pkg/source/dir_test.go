package source

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/pkg/event"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Written as is: two writes of the same size in one tick of the file
	// system's clock keep the stat, and Dir must see the change anyway
	// (TestDirSeesASameStatRewrite).
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A file written again with content of the same size and the same
// modification time (two saves in one tick of the file system's clock,
// a second on some) is read again: its stat is not trusted until a check
// well after its modification time. Once it is, a rescan reads nothing.
func TestDirSeesASameStatRewrite(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "east", "web.yaml")
	write(t, path, svcWeb)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDir(root, quietLog())
	if _, _, err := d.Scan(); err != nil {
		t.Fatal(err)
	}
	same := strings.Replace(svcWeb, "80", "81", 1)
	if len(same) != len(svcWeb) {
		t.Fatal("not the same size")
	}
	write(t, path, same)
	if err := os.Chtimes(path, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	evs, _, err := d.Scan()
	if err != nil || !slices.Equal(summary(evs), []string{"upsert east ns/web"}) {
		t.Fatalf("a same-size rewrite in the same tick: events %q, %v", summary(evs), err)
	}
	// Long after its modification time, the stat is trusted again: a
	// rescan neither reads nor compares it.
	old := info.ModTime().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Scan(); err != nil {
		t.Fatal(err)
	}
	f := d.files[path]
	if f.racy() {
		t.Fatalf("a file an hour old is racy (checked %v, modified %v)", f.checkedAt, f.modTime)
	}
	checked := f.checkedAt
	if evs, _, _ := d.Scan(); len(evs) != 0 || d.files[path] != f || f.checkedAt != checked {
		t.Errorf("a rescan of a file past its racy window read it again (events %q)", summary(evs))
	}
}

// summary renders events as "op member kind ns/name" lines.
func summary(evs []event.Event) []string {
	var out []string
	for _, e := range evs {
		s := e.Op.String() + " " + e.Member
		if e.Object != nil {
			s += " " + e.Object.GetNamespace() + "/" + e.Object.GetName()
		}
		out = append(out, s)
	}
	return out
}

const svcWeb = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\nspec: {ports: [{port: 80}]}\n"
const exportWeb = "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: web, namespace: ns}\n"

// Scan turns the folder's changes into the events that keep a Store in
// step: joins, upserts of new and changed objects only, deletes of removed
// ones, leaves of removed members.
func TestDirScanEmitsChanges(t *testing.T) {
	root := t.TempDir()
	d := NewDir(root, quietLog())
	d.Settle = 0 // removals at once (TestDirHoldsWhatMayBeAMistake covers the wait)
	scan := func() ([]string, []Problem) {
		t.Helper()
		evs, probs, err := d.Scan()
		if err != nil {
			t.Fatal(err)
		}
		return summary(evs), probs
	}
	steps := []struct {
		name   string
		change func()
		want   []string
	}{
		{"initial", func() {
			write(t, filepath.Join(root, "east", "web.yaml"), svcWeb+"---\n"+exportWeb)
			write(t, filepath.Join(root, "west", "ns.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n")
		}, []string{"join east", "join west", "upsert east /ns", "upsert east ns/web", "upsert east ns/web", "upsert west /ns"}},
		{"no change", func() {}, nil},
		{"edit one document", func() {
			write(t, filepath.Join(root, "east", "web.yaml"), strings.Replace(svcWeb, "80", "81", 1)+"---\n"+exportWeb)
		}, []string{"upsert east ns/web"}},
		{"remove a document", func() { write(t, filepath.Join(root, "east", "web.yaml"), strings.Replace(svcWeb, "80", "81", 1)) },
			[]string{"delete east ns/web"}},
		{"new file", func() { write(t, filepath.Join(root, "east", "export.yml"), exportWeb) },
			[]string{"upsert east ns/web"}},
		{"remove file", func() { _ = os.Remove(filepath.Join(root, "east", "export.yml")) },
			[]string{"delete east ns/web"}},
		{"member leaves", func() { _ = os.RemoveAll(filepath.Join(root, "west")) },
			[]string{"leave west"}},
	}
	for _, st := range steps {
		st.change()
		got, probs := scan()
		if len(probs) > 0 {
			t.Errorf("%s: problems %v", st.name, probs)
		}
		if !slices.Equal(got, st.want) {
			t.Errorf("%s: events %q, want %q", st.name, got, st.want)
		}
	}
}

// The folder is edited by hand and by GitOps: what may be a mistake or a
// save half done never takes away what is served. An object whose
// document fails (not YAML, a misspelt field, a port a cluster refuses)
// keeps its last good version, reported, until the file is fixed; an
// object gone from a file that just changed, or whose file or member
// folder just went missing, is removed only once that has lasted Settle
// (an editor's save that truncates the file first, a save by rename);
// changes are never delayed.
func TestDirHoldsWhatMayBeAMistake(t *testing.T) {
	root := t.TempDir()
	east := filepath.Join(root, "east")
	web := filepath.Join(east, "web.yaml")
	clock := time.Unix(1_800_000_000, 0)
	d := NewDir(root, quietLog())
	d.now = func() time.Time { return clock }
	svc81 := strings.Replace(svcWeb, "80", "81", 1)
	steps := []struct {
		name     string
		change   func()
		later    time.Duration // the clock moves on this much before the scan
		want     []string
		problems []string // substrings of the problems, in order
	}{
		{"initial", func() {
			write(t, web, svcWeb+"---\n"+exportWeb)
			write(t, filepath.Join(root, "west", "web.yaml"), svcWeb)
		}, 0, []string{"join east", "join west", "upsert east /ns", "upsert east ns/web", "upsert east ns/web", "upsert west /ns", "upsert west ns/web"}, nil},
		{"a document that is not YAML", func() { write(t, web, "apiVersion: v1\nkind: Service\nmetadata: {name: web\n---\n"+exportWeb) },
			0, nil, []string{"web.yaml (Service ns/web): no longer decodes here: its last good version is still served", "web.yaml:1: document 1: not valid YAML"}},
		{"still held long after", func() {}, time.Hour, nil, []string{"last good version is still served", "not valid YAML"}},
		{"a misspelt field", func() { write(t, web, strings.Replace(svcWeb, "ports:", "prots:", 1)+"---\n"+exportWeb) },
			0, nil, []string{"(Service ns/web): no longer decodes here", `unknown field "spec.prots"`}},
		{"a port a cluster refuses", func() { write(t, web, strings.Replace(svcWeb, "80", "70000", 1)+"---\n"+exportWeb) },
			0, nil, []string{"(Service ns/web): no longer decodes here", "must be between 1 and 65535"}},
		{"fixed, with a change: served at once", func() { write(t, web, svc81+"---\n"+exportWeb) },
			0, []string{"upsert east ns/web"}, nil},
		{"truncated by a save", func() { write(t, web, "") }, 0, nil, nil},
		{"written 200 ms later", func() { write(t, web, svc81+"---\n"+exportWeb) }, 200 * time.Millisecond, nil, nil},
		{"long after the save", func() {}, time.Hour, nil, nil},
		{"a document removed", func() { write(t, web, svc81) }, 0, nil, nil},
		{"... removed once the file settled", func() {}, DefaultSettle, []string{"delete east ns/web"}, nil},
		{"a file renamed away and back (a save by rename)", func() {
			if err := os.Rename(web, web+".swp"); err != nil {
				t.Fatal(err)
			}
		}, 0, nil, nil},
		{"... back 300 ms later", func() {
			if err := os.Rename(web+".swp", web); err != nil {
				t.Fatal(err)
			}
		}, 300 * time.Millisecond, nil, nil},
		{"a file removed", func() { _ = os.Remove(web) }, time.Hour, nil, nil},
		{"... removed once it stayed away", func() {}, DefaultSettle, []string{"delete east /ns", "delete east ns/web"}, nil},
		{"a member folder removed", func() { _ = os.RemoveAll(filepath.Join(root, "west")) }, 0, nil, nil},
		{"... leaves once it stayed away", func() {}, DefaultSettle, []string{"leave west"}, nil},
	}
	for _, st := range steps {
		st.change()
		clock = clock.Add(st.later)
		evs, probs, err := d.Scan()
		if err != nil {
			t.Fatal(err)
		}
		if got := summary(evs); !slices.Equal(got, st.want) {
			t.Errorf("%s: events %q, want %q", st.name, got, st.want)
		}
		if len(probs) != len(st.problems) {
			t.Errorf("%s: problems %v, want %d", st.name, probs, len(st.problems))
			continue
		}
		for i, p := range probs {
			if !strings.Contains(p.String(), st.problems[i]) {
				t.Errorf("%s: problem %q does not contain %q", st.name, p, st.problems[i])
			}
		}
	}
}

// Run applies a held removal when it is due, with no further change in
// the folder to wake it (the poll interval is far beyond the test).
func TestDirRunRemovesOnceSettled(t *testing.T) {
	root := t.TempDir()
	web := filepath.Join(root, "east", "web.yaml")
	write(t, web, svcWeb+"---\n"+exportWeb)
	d := NewDir(root, quietLog())
	d.Poll, d.Settle = time.Hour, 100*time.Millisecond
	batches := make(chan []string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx, func(evs []event.Event, _ []Problem) { batches <- summary(evs) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	next := func() []string {
		t.Helper()
		select {
		case b := <-batches:
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("no batch")
		}
		return nil
	}
	if got := next(); !slices.Contains(got, "upsert east ns/web") {
		t.Fatalf("first batch %q", got)
	}
	write(t, web, svcWeb)
	if got := next(); !slices.Equal(got, []string{"delete east ns/web"}) {
		t.Fatalf("after the export's removal settled: %q", got)
	}
}

// A broken file, a duplicate object and a stray file at the top are
// reported with file and document; everything else is still read.
func TestDirScanKeepsGoingOnProblems(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "east", "a.yaml"), svcWeb)
	write(t, filepath.Join(root, "east", "b.yaml"), "kind: [\n---\n"+svcWeb)
	write(t, filepath.Join(root, "east", "notes.txt"), "not a manifest")
	write(t, filepath.Join(root, "stray.yaml"), svcWeb)
	d := NewDir(root, quietLog())
	evs, probs, err := d.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(evs); !slices.Equal(got, []string{"join east", "upsert east /ns", "upsert east ns/web"}) {
		t.Errorf("events %q", got)
	}
	var got []string
	for _, p := range probs {
		got = append(got, p.String())
	}
	want := []string{
		filepath.Join(root, "east", "b.yaml") + ":1: document 1: not valid YAML",
		filepath.Join(root, "east", "b.yaml") + ":3: document 2 (Service ns/web): duplicate object, already defined at " + filepath.Join(root, "east", "a.yaml") + ":1 (document 1)",
		filepath.Join(root, "stray.yaml") + ": ignored",
	}
	if len(got) != len(want) {
		t.Fatalf("problems %q", got)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %q, want prefix %q", got[i], want[i])
		}
	}
	if _, _, err := NewDir(filepath.Join(root, "missing"), quietLog()).Scan(); err == nil {
		t.Error("a missing folder is not an error")
	}
}

// Run applies a new file without a restart, through file notifications
// (the poll interval is set far beyond the test's deadline).
func TestDirRunWatchesFolder(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "east", "web.yaml"), svcWeb)
	d := NewDir(root, quietLog())
	d.Poll = time.Hour
	batches := make(chan []string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx, func(evs []event.Event, _ []Problem) { batches <- summary(evs) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	next := func() []string {
		select {
		case b := <-batches:
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("no events from the watcher")
		}
		return nil
	}
	if got := next(); !slices.Contains(got, "upsert east ns/web") {
		t.Fatalf("first batch %q", got)
	}
	write(t, filepath.Join(root, "east", "export.yaml"), exportWeb)
	if got := next(); !slices.Equal(got, []string{"upsert east ns/web"}) {
		t.Fatalf("after new file: %q", got)
	}
	write(t, filepath.Join(root, "north", "web.yaml"), svcWeb)
	if got := next(); !slices.Contains(got, "join north") {
		t.Fatalf("after new member: %q", got)
	}
}

// Files that are not regular files of a sane size are reported and
// never read: a FIFO named *.yaml (which would block a reader forever), a
// link to /dev/zero (which would take all memory), and a file over
// MaxFileSize; everything else in the folder is served, and an edit made
// after they appeared is served too.
func TestDirRefusesHostileFiles(t *testing.T) {
	root := t.TempDir()
	east := filepath.Join(root, "east")
	write(t, filepath.Join(east, "web.yaml"), svcWeb)
	if err := syscall.Mkfifo(filepath.Join(east, "fifo.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(east, "zero.yaml")); err != nil {
		t.Fatal(err)
	}
	big, err := os.Create(filepath.Join(east, "big.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	_ = big.Close()

	d := NewDir(root, quietLog())
	d.Poll = time.Hour
	batches := make(chan []Problem, 10)
	events := make(chan []string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- d.Run(ctx, func(evs []event.Event, probs []Problem) { events <- summary(evs); batches <- probs })
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not stop")
		}
	}()
	wait := func() ([]string, []Problem) {
		t.Helper()
		select {
		case evs := <-events:
			return evs, <-batches
		case <-time.After(10 * time.Second):
			t.Fatal("the folder reader is stuck")
		}
		return nil, nil
	}
	evs, probs := wait()
	if !slices.Contains(evs, "upsert east ns/web") {
		t.Errorf("the regular file was not served: %q", evs)
	}
	want := map[string]string{"fifo.yaml": "not a regular file", "zero.yaml": "not a regular file", "big.yaml": "larger than 16 MiB"}
	for _, p := range probs {
		if w, ok := want[filepath.Base(p.File)]; ok && strings.Contains(p.Err, w) {
			delete(want, filepath.Base(p.File))
		}
	}
	if len(want) != 0 {
		t.Errorf("not reported: %v (problems %v)", want, probs)
	}
	write(t, filepath.Join(east, "export.yaml"), exportWeb)
	if evs, _ := wait(); !slices.Contains(evs, "upsert east ns/web") {
		t.Errorf("an edit after the hostile files was not served: %q", evs)
	}
}

// A rescan of a folder in which nothing changed reads and decodes
// nothing and reports no events, but the same problems.
func TestDirRescanOfUnchangedFolderIsStatOnly(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "east", "web.yaml"), svcWeb)
	write(t, filepath.Join(root, "east", "bad.yaml"), "kind: [\n")
	write(t, filepath.Join(root, "stray.yaml"), svcWeb)
	d := NewDir(root, quietLog())
	if _, probs, err := d.Scan(); err != nil || len(probs) != 2 {
		t.Fatalf("first scan: %v %v", probs, err)
	}
	first := d.files[filepath.Join(root, "east", "web.yaml")]
	evs, probs, err := d.Scan()
	if err != nil || len(evs) != 0 || len(probs) != 2 {
		t.Fatalf("rescan: events %v problems %v err %v", summary(evs), probs, err)
	}
	if d.files[filepath.Join(root, "east", "web.yaml")] != first {
		t.Error("an unchanged file was read again")
	}
	write(t, filepath.Join(root, "east", "export.yaml"), exportWeb)
	if evs, _, _ := d.Scan(); !slices.Equal(summary(evs), []string{"upsert east ns/web"}) {
		t.Errorf("a new file after stat-only rescans: %q", summary(evs))
	}
	if err := os.Remove(filepath.Join(root, "stray.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, probs, _ := d.Scan(); len(probs) != 1 {
		t.Errorf("a removed stray file is still reported: %v", probs)
	}
}

// A ConfigMap mounted as the ClusterSet folder (items with paths
// <member>/<file>) is laid out by the kubelet as links: <member> ->
// ..data/<member>, ..data -> ..<timestamp>, and an update swaps ..data.
// Its members are read (they were skipped: a link is not a folder), and
// the swap is seen as the change it is.
func TestDirReadsAMountedConfigMap(t *testing.T) {
	root := t.TempDir()
	version := func(name, svc string) {
		t.Helper()
		write(t, filepath.Join(root, name, "east", "web.yaml"), svc)
		tmp := filepath.Join(root, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(root, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_12_05_1", svcWeb)
	if err := os.Symlink(filepath.Join("..data", "east"), filepath.Join(root, "east")); err != nil {
		t.Fatal(err)
	}
	d := NewDir(root, quietLog())
	evs, probs, err := d.Scan()
	if err != nil || len(probs) > 0 {
		t.Fatalf("scan: %v %v", err, probs)
	}
	if got, want := summary(evs), []string{"join east", "upsert east /ns", "upsert east ns/web"}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	version("..2026_12_05_2", strings.Replace(svcWeb, "80", "81", 1))
	evs, _, err = d.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summary(evs), []string{"upsert east ns/web"}; !slices.Equal(got, want) {
		t.Errorf("after the kubelet swapped ..data: events %q, want %q", got, want)
	}
}

// A folder inside a member's folder is not read, and says so (it was
// ignored silently), also when it appears after the first scan.
func TestDirReportsNestedFolders(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "east", "web.yaml"), svcWeb)
	d := NewDir(root, quietLog())
	if _, probs, err := d.Scan(); err != nil || len(probs) != 0 {
		t.Fatalf("first scan: %v %v", probs, err)
	}
	write(t, filepath.Join(root, "east", "prod", "export.yaml"), exportWeb)
	evs, probs, err := d.Scan()
	if err != nil || len(evs) != 0 {
		t.Fatalf("events %v err %v: the nested file must not be read", summary(evs), err)
	}
	if len(probs) != 1 || !strings.Contains(probs[0].String(), filepath.Join(root, "east", "prod")+": ignored: folders inside a member's folder are not read") {
		t.Errorf("problems %v", probs)
	}
	if err := os.RemoveAll(filepath.Join(root, "east", "prod")); err != nil {
		t.Fatal(err)
	}
	if _, probs, _ := d.Scan(); len(probs) != 0 {
		t.Errorf("a removed nested folder is still reported: %v", probs)
	}
}
