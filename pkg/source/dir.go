package source

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/eastwest-dev/eastwest/internal/parallel"
	"github.com/eastwest-dev/eastwest/pkg/event"
)

// DefaultPollInterval is how often a Dir rescans its folder when no file
// system notification arrives: a safety net for file systems that do not
// notify (network mounts, some container volumes).
const DefaultPollInterval = time.Second

// MaxFileSize bounds one file of the folder. An apiserver takes requests
// of at most 3 MiB; a file may hold many objects (a List), so the cap is
// higher, but a file beyond it is reported, not read: a stray disk image
// or a link to /dev/zero must not take the server's memory.
const MaxFileSize = 16 << 20

// DefaultSettle is how long a removal waits for the folder to settle: an
// object that disappears from a file changed less than this long ago (an
// editor's save that truncates the file and writes it a moment later), or
// whose file or member folder vanished less than this long ago (a save by
// rename, a git checkout), is removed only if it is still gone then.
// Changes and additions are not delayed.
const DefaultSettle = time.Second

// notifyHoldoff gathers the burst of notifications an editor's save or a
// git checkout produces into one scan.
const notifyHoldoff = 50 * time.Millisecond

// Dir reads a ClusterSet from a folder: one subfolder per member cluster,
// named by the member, holding *.yaml, *.yml or *.json files of Kubernetes
// objects. Namespaces that objects use exist in that member without a
// Namespace document. Files and folders whose names start with "." are
// ignored.
//
// Scan reports what changed since the previous Scan as events; Run scans
// whenever the folder changes. A Dir is used by one goroutine.
//
// The folder is meant to be edited by hand and by GitOps, so a mistake in
// it never takes away what is served: an object whose file holds a
// document that fails (not YAML, an unknown field, a port of 70000) keeps
// its last good version until the file is fixed, reported as a problem;
// and an object that disappears is removed only once its file has settled
// (Settle).
type Dir struct {
	root string
	log  *slog.Logger
	// Poll is the rescan interval when no notification arrives.
	Poll time.Duration
	// Settle is how long a removal waits for its file to settle
	// (DefaultSettle).
	Settle time.Duration
	// now is the clock (tests set it).
	now func() time.Time

	files   map[string]*file           // by path
	current map[memberObjectKey]Object // what the last Scan reported
	members map[string]bool            // members the last Scan reported
	seen    map[string]bool            // problems already logged
	// probs are the problems the last Scan found; a Scan that finds no
	// file changed returns them again without decoding anything.
	probs []Problem
	// scanned is false until the first Scan.
	scanned bool
	// stray are the manifests the last Scan found outside any member's
	// folder (reported as problems by name).
	stray map[string]bool
	// nested are the folders inside member folders the last Scan found
	// (not read; reported); nestedNow collects them during a Scan.
	nested, nestedNow map[string]bool
	// goneSince is when a file or member folder that held objects was
	// first found missing, while its objects wait for Settle.
	goneSince map[string]time.Time
	// recheck is when a removal held for Settle is due (zero: none).
	recheck time.Time
	// ignored are the documents of kinds eastwest does not read that the
	// last Scan found, already logged at debug level (replaced by each
	// Scan, as nested is: bounded by the folder, not by its history);
	// ignoredNow collects them during a Scan.
	ignored, ignoredNow map[string]bool
}

type memberObjectKey struct {
	member string
	key    ObjectKey
}

// racyWindow is how long after a file's modification time its stat is
// not trusted: a file system keeps modification times in ticks (a few
// milliseconds on ext4, a second or two on others), so a file read in
// the tick of its last write can be written again, same size, same
// modification time, and its stat would never tell. Until a check made
// racyWindow after its modification time, such a file's content is
// compared at every Scan (git's "racily clean" index entries).
const racyWindow = 2 * time.Second

// file is one file as last read.
type file struct {
	size    int64
	modTime time.Time
	mode    fs.FileMode
	// hash is the content's hash; checkedAt when the content was last
	// read or compared (the wall clock, as file systems' times are).
	hash      string
	checkedAt time.Time
	objects   []Object
	probs     []Problem
	err       error // why the file cannot be read at all
	// readAt is when this version of the file was read.
	readAt time.Time
}

// failing reports whether a file holds a document that cannot be used
// (or cannot be read at all): its objects that went missing keep their
// last good version.
func (f *file) failing() bool {
	if f.err != nil {
		return true
	}
	for _, p := range f.probs {
		if !p.Ignored {
			return true
		}
	}
	return false
}

// unchanged reports whether a file's stat is the one it was last read at.
func (f *file) unchanged(info fs.FileInfo) bool {
	return f.size == info.Size() && f.modTime.Equal(info.ModTime()) && f.mode == info.Mode()
}

// racy reports whether the file was last checked too soon after its
// modification time for an unchanged stat to mean unchanged content
// (racyWindow).
func (f *file) racy() bool { return f.checkedAt.Sub(f.modTime) < racyWindow }

// NewDir returns a Dir for the folder root. Problems are logged to log.
func NewDir(root string, log *slog.Logger) *Dir {
	return &Dir{
		root:      root,
		log:       log,
		Poll:      DefaultPollInterval,
		Settle:    DefaultSettle,
		now:       time.Now,
		files:     map[string]*file{},
		current:   map[memberObjectKey]Object{},
		members:   map[string]bool{},
		seen:      map[string]bool{},
		goneSince: map[string]time.Time{},
		ignored:   map[string]bool{},
	}
}

// Scan reads the folder and returns the events that bring a Store from the
// previous Scan's view to the folder's content, and every problem found in
// the folder now. Only files whose size or modification time changed are
// read again, and those modified too recently for their stat to be
// trusted (racyWindow) are compared by content. It fails only when the folder itself cannot be read.
func (d *Dir) Scan() ([]event.Event, []Problem, error) {
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return nil, nil, fmt.Errorf("read ClusterSet folder: %w", err)
	}
	now := d.now()
	if d.scanned && !d.changed(entries) && (d.recheck.IsZero() || now.Before(d.recheck)) {
		// The safety-net rescan of a folder nothing changed in costs a
		// stat per file: nothing is read, decoded or compared.
		return nil, d.probs, nil
	}
	d.scanned = true
	var memberNames []string
	for _, e := range entries {
		if d.isDir(e) && !strings.HasPrefix(e.Name(), ".") {
			memberNames = append(memberNames, e.Name())
		}
	}
	d.prefetch(memberNames, now)
	var probs []Problem
	members := map[string]bool{}
	stray := map[string]bool{}
	d.nestedNow, d.ignoredNow = map[string]bool{}, map[string]bool{}
	next := map[memberObjectKey]Object{}
	seenFiles := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if !d.isDir(e) {
			if isManifest(name) {
				stray[name] = true
				probs = append(probs, Problem{File: filepath.Join(d.root, name),
					Err: "ignored: files go in a subfolder named after their member cluster, DIR/<cluster>/" + name})
			}
			continue
		}
		members[name] = true
		probs = append(probs, d.scanMember(name, next, seenFiles, now)...)
	}
	for path := range d.files {
		if !seenFiles[path] {
			delete(d.files, path)
		}
	}
	probs = append(probs, d.hold(now, members, next)...)
	evs := d.diff(members, next)
	d.members, d.current, d.stray, d.nested, d.ignored = members, next, stray, d.nestedNow, d.ignoredNow
	slices.SortFunc(probs, func(a, b Problem) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Doc, b.Doc), strings.Compare(a.String(), b.String()))
	})
	d.logProblems(probs)
	d.probs = probs
	return evs, probs, nil
}

// isDir reports whether an entry of the folder is a member folder: a
// folder, or a link to one. A ConfigMap mounted as the ClusterSet folder
// (items with paths <member>/<file>) has each member as a link into the
// kubelet's ..data folder.
func (d *Dir) isDir(e os.DirEntry) bool {
	if e.Type()&os.ModeSymlink == 0 {
		return e.IsDir()
	}
	info, err := os.Stat(filepath.Join(d.root, e.Name()))
	return err == nil && info.IsDir()
}

// changed reports whether anything Scan reads may differ from the last
// Scan: the members, a manifest's name or stat. It only lists folders and
// stats files.
func (d *Dir) changed(entries []os.DirEntry) bool {
	members, files, stray, nestedSeen := 0, 0, 0, 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if !d.isDir(e) {
			if isManifest(name) {
				if !d.stray[name] {
					return true
				}
				stray++
			}
			continue
		}
		if !d.members[name] {
			return true
		}
		members++
		paths, nested, err := d.manifests(name)
		if err != nil {
			return true
		}
		for _, n := range nested {
			if !d.nested[n] {
				return true
			}
		}
		nestedSeen += len(nested)
		for _, path := range paths {
			f, ok := d.files[path]
			if !ok {
				return true
			}
			info, err := os.Stat(path)
			if err != nil || !f.unchanged(info) || f.racy() {
				return true
			}
			files++
		}
	}
	return members != len(d.members) || files != len(d.files) || stray != len(d.stray) || nestedSeen != len(d.nested)
}

// scanMember reads one member's folder into next and returns its problems.
func (d *Dir) scanMember(member string, next map[memberObjectKey]Object, seenFiles map[string]bool, now time.Time) []Problem {
	paths, nested, err := d.manifests(member)
	if err != nil {
		return []Problem{{File: filepath.Join(d.root, member), Err: err.Error()}}
	}
	var probs []Problem
	for _, n := range nested {
		d.nestedNow[n] = true
		probs = append(probs, Problem{File: n, Err: "ignored: folders inside a member's folder are not read (files go in DIR/" + member + "/ itself)"})
	}
	origin := map[ObjectKey]string{}
	namespaces := map[string]bool{}
	for _, path := range paths {
		seenFiles[path] = true
		f := d.read(path, now)
		if f.err != nil {
			probs = append(probs, Problem{File: path, Err: f.err.Error()})
			continue
		}
		for _, p := range f.probs {
			if !p.Ignored {
				probs = append(probs, p)
			} else if s := p.String(); !d.ignoredNow[s] {
				// Kinds eastwest does not read (a folder of real
				// manifests): said once, at debug level.
				d.ignoredNow[s] = true
				if d.ignored[s] {
					continue
				}
				d.log.Debug("ignored object in ClusterSet folder", "object", s)
			}
		}
		for _, o := range f.objects {
			here := fmt.Sprintf("%s:%d (document %d)", path, o.Line, o.Doc)
			if first, dup := origin[o.Key]; dup {
				probs = append(probs, Problem{File: path, Line: o.Line, Doc: o.Doc, Object: o.Key.String(),
					Err: "duplicate object, already defined at " + first + "; the first definition is used"})
				continue
			}
			origin[o.Key] = here
			o.File = path
			next[memberObjectKey{member, o.Key}] = o
			if ns := o.Obj.GetNamespace(); ns != "" {
				namespaces[ns] = true
			}
		}
	}
	// A namespace an object lives in exists in its member, as it must in a
	// real cluster, whether or not the folder declares it.
	for ns := range namespaces {
		k := ObjectKey{Kind: schema.GroupKind{Kind: "Namespace"}, Name: ns}
		if _, ok := next[memberObjectKey{member, k}]; !ok {
			next[memberObjectKey{member, k}] = Object{Key: k, Obj: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, Hash: "implicit"}
		}
	}
	return probs
}

// read returns a file's objects, reading it again only when its size,
// modification time or mode changed, or, while its stat cannot be trusted
// (racy), when its content did. Only regular files (or links to them) of
// at most MaxFileSize are read; anything else (a FIFO, a device, a
// socket) is reported and never opened in a way that could block.
func (d *Dir) read(path string, now time.Time) *file {
	info, err := os.Stat(path)
	if err != nil {
		return &file{err: err, readAt: now}
	}
	if f, ok := d.files[path]; ok && f.unchanged(info) {
		if !f.racy() {
			return f
		}
		checked := time.Now()
		if data, err := readRegular(path); err == nil && hashOf(data) == f.hash {
			f.checkedAt = checked
			return f
		}
	}
	f := load(path, info, now)
	d.files[path] = f
	return f
}

// load reads and decodes a file whose stat is info.
func load(path string, info fs.FileInfo, now time.Time) *file {
	// Checked before it is read: a write during the read leaves it racy.
	f := &file{size: info.Size(), modTime: info.ModTime(), mode: info.Mode(), readAt: now, checkedAt: time.Now()}
	data, err := readRegular(path)
	if err != nil {
		f.err = err
		return f
	}
	f.hash = hashOf(data)
	f.objects, f.probs = Decode(path, data)
	return f
}

// prefetch reads and decodes, on every core, the manifests of the
// members' folders that changed since they were last read, so that the
// first scan of a large folder (10,000 services) is not bound to one
// core. Scan then finds them read.
func (d *Dir) prefetch(members []string, now time.Time) {
	type job struct {
		path string
		info fs.FileInfo
	}
	var jobs []job
	for _, m := range members {
		paths, _, err := d.manifests(m)
		if err != nil {
			continue
		}
		for _, path := range paths {
			info, err := os.Stat(path)
			if err != nil {
				continue
			}
			if f, ok := d.files[path]; !ok || !f.unchanged(info) {
				jobs = append(jobs, job{path, info})
			}
		}
	}
	out := make([]*file, len(jobs))
	parallel.For(len(jobs), 2, func(i int) { out[i] = load(jobs[i].path, jobs[i].info, now) })
	for i, j := range jobs {
		d.files[j.path] = out[i]
	}
}

// manifests lists the paths of a member folder's manifests, in name
// order, and the folders in it (not read: reported).
func (d *Dir) manifests(member string) (paths, nested []string, err error) {
	dir := filepath.Join(d.root, member)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if e.IsDir() {
			nested = append(nested, filepath.Join(dir, e.Name()))
			continue
		}
		if isManifest(e.Name()) {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	return paths, nested, nil
}

// readRegular reads a regular file of at most MaxFileSize. The file is
// opened without blocking (a FIFO swapped in after a stat cannot hold the
// reader) and checked again once open.
func readRegular(path string) ([]byte, error) {
	if info, err := os.Stat(path); err != nil {
		return nil, err
	} else if err := checkRegular(info); err != nil {
		return nil, err
	}
	fd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	info, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkRegular(info); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(fd, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("not read: larger than %d MiB (split it into several files)", MaxFileSize>>20)
	}
	return data, nil
}

func checkRegular(info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		return fmt.Errorf("not read: not a regular file (%s)", info.Mode().Type())
	}
	if info.Size() > MaxFileSize {
		return fmt.Errorf("not read: %d bytes, larger than %d MiB (split it into several files)", info.Size(), MaxFileSize>>20)
	}
	return nil
}

// hold keeps in next (and members) what the previous Scan reported and
// this one did not find, where the folder may not say what its author
// meant yet:
//
//   - an object whose file holds a failing document keeps its last good
//     version until the file is fixed (a typo must not take a member's
//     endpoints away from every client); reported as a problem;
//   - an object gone from a file read less than Settle ago, or whose file
//     or member folder went missing less than Settle ago, stays until
//     then (a save that truncates first, a save by rename, a checkout);
//     d.recheck says when to look again.
//
// It returns the problems of the objects it keeps for a failing file.
func (d *Dir) hold(now time.Time, members map[string]bool, next map[memberObjectKey]Object) []Problem {
	d.recheck = time.Time{}
	holding := map[string]bool{} // paths missing, whose objects wait
	// waiting reports whether something that happened at since has not
	// settled yet, and schedules the recheck for when it will have.
	waiting := func(since time.Time) bool {
		until := since.Add(d.Settle)
		if !now.Before(until) {
			return false
		}
		if d.recheck.IsZero() || until.Before(d.recheck) {
			d.recheck = until
		}
		return true
	}
	// goneWaiting does the same for a path that went missing, noting when
	// it was first found missing.
	goneWaiting := func(path string) bool {
		since, ok := d.goneSince[path]
		if !ok {
			since = now
			d.goneSince[path] = now
		}
		if waiting(since) {
			holding[path] = true
			return true
		}
		return false
	}
	// A member folder that vanished keeps the member and all its objects
	// until it has been gone for Settle.
	whole := map[string]bool{}
	for m := range d.members {
		if !members[m] && goneWaiting(filepath.Join(d.root, m)) {
			members[m], whole[m] = true, true
		}
	}
	var probs []Problem
	for k, old := range d.current {
		if _, ok := next[k]; ok || !members[k.member] {
			continue
		}
		keep := whole[k.member]
		if !keep && old.Hash != "implicit" {
			switch f, ok := d.files[old.File]; {
			case !ok:
				keep = goneWaiting(old.File)
			case f.failing():
				keep = true
				probs = append(probs, Problem{File: old.File, Object: k.key.String(),
					Err: "no longer decodes here: its last good version is still served while this file has a document that fails"})
			default:
				keep = waiting(f.readAt)
			}
		}
		if !keep {
			continue
		}
		next[k] = old
		// Its namespace stays with it.
		if ns := old.Obj.GetNamespace(); ns != "" {
			nk := memberObjectKey{k.member, ObjectKey{Kind: schema.GroupKind{Kind: "Namespace"}, Name: ns}}
			if _, ok := next[nk]; !ok {
				if prev, ok := d.current[nk]; ok {
					next[nk] = prev
				}
			}
		}
	}
	for p := range d.goneSince {
		if !holding[p] {
			delete(d.goneSince, p)
		}
	}
	return probs
}

// diff turns the change from the previous view to next into events:
// members join before their objects arrive and leave with all of them.
func (d *Dir) diff(members map[string]bool, next map[memberObjectKey]Object) []event.Event {
	var evs []event.Event
	for _, m := range sortedKeys(members) {
		if !d.members[m] {
			evs = append(evs, event.Event{Member: m, Op: event.OpJoin})
		}
	}
	keys := make([]memberObjectKey, 0, len(next))
	for k := range next {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	for _, k := range keys {
		if old, ok := d.current[k]; !ok || old.Hash != next[k].Hash {
			evs = append(evs, event.Event{Member: k.member, Op: event.OpUpsert, Object: next[k].Obj})
		}
	}
	keys = keys[:0]
	for k := range d.current {
		if _, ok := next[k]; !ok && members[k.member] {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, compareKeys)
	for _, k := range keys {
		evs = append(evs, event.Event{Member: k.member, Op: event.OpDelete, Object: d.current[k].Obj})
	}
	for _, m := range sortedKeys(d.members) {
		if !members[m] {
			evs = append(evs, event.Event{Member: m, Op: event.OpLeave})
		}
	}
	return evs
}

// logProblems logs each problem once, when it first appears.
func (d *Dir) logProblems(probs []Problem) {
	now := map[string]bool{}
	for _, p := range probs {
		s := p.String()
		now[s] = true
		if !d.seen[s] {
			d.log.Warn("cannot use object from ClusterSet folder", "problem", s)
		}
	}
	d.seen = now
}

// Run scans the folder whenever it changes (file system notifications,
// gathered for a short holdoff, and a periodic rescan as a safety net) and
// hands every batch of events to sink (with the folder's current problems),
// until ctx ends. The first batch, sent at once, holds the whole folder. A folder that cannot be read
// is logged and retried; it does not stop Run.
func (d *Dir) Run(ctx context.Context, sink func([]event.Event, []Problem)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn("file notifications unavailable, polling only", "err", err)
	} else {
		defer w.Close()
	}
	first, lastProbs := true, ""
	scan := func() {
		start := time.Now()
		if first {
			d.log.Info("reading ClusterSet folder", "dir", d.root)
		}
		evs, probs, err := d.Scan()
		if err != nil {
			d.log.Error("cannot scan ClusterSet folder", "dir", d.root, "err", err)
			return
		}
		if first {
			d.log.Info("read ClusterSet folder", "dir", d.root, "members", len(d.members), "files", len(d.files),
				"objects", len(d.current), "problems", len(probs), "took", time.Since(start).Round(time.Millisecond))
		}
		if w != nil {
			d.watch(w)
		}
		// The first scan is always delivered (even an empty folder is a
		// state: the consumer's initial sync), later ones when events or
		// the problems changed.
		var sb strings.Builder
		for _, p := range probs {
			sb.WriteString(p.String())
			sb.WriteByte('\n')
		}
		if first || len(evs) > 0 || sb.String() != lastProbs {
			sink(evs, probs)
		}
		first, lastProbs = false, sb.String()
	}
	// after scans, and looks again when a removal held for Settle is due.
	var holdoff, recheck <-chan time.Time
	after := func() {
		scan()
		recheck = nil
		if !d.recheck.IsZero() {
			recheck = time.After(time.Until(d.recheck))
		}
	}
	after()
	poll := time.NewTicker(d.Poll)
	defer poll.Stop()
	var notify <-chan fsnotify.Event
	var notifyErr <-chan error
	if w != nil {
		notify, notifyErr = w.Events, w.Errors
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
			if holdoff == nil {
				holdoff = time.After(notifyHoldoff)
			}
		case err := <-notifyErr:
			d.log.Warn("file notification error", "err", err)
		case <-holdoff:
			holdoff = nil
			after()
		case <-recheck:
			after()
		case <-poll.C:
			after()
		}
	}
}

// watch makes sure the root and every member folder are watched; adding a
// watched path again is a no-op.
func (d *Dir) watch(w *fsnotify.Watcher) {
	paths := []string{d.root}
	for m := range d.members {
		paths = append(paths, filepath.Join(d.root, m))
	}
	for _, p := range paths {
		if err := w.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Debug("cannot watch folder", "path", p, "err", err)
		}
	}
}

func isManifest(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// compareKeys orders events so that a member's namespaces come before the
// objects in them, which makes logs of a batch read naturally.
func compareKeys(a, b memberObjectKey) int {
	if c := strings.Compare(a.member, b.member); c != 0 {
		return c
	}
	ar, br := kindRank(a.key.Kind.Kind), kindRank(b.key.Kind.Kind)
	if ar != br {
		return ar - br
	}
	if c := strings.Compare(a.key.Namespace, b.key.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.key.Name, b.key.Name)
}

func kindRank(kind string) int { return event.Rank(kind) }
