package unionfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/internal/testenv"
)

// eventually retries check until it returns nil, failing after a
// deadline far beyond any cache the test relies on being dropped.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %v", what, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventuallyReads waits until file p holds want.
func eventuallyReads(t *testing.T, what, p, want string) {
	t.Helper()
	eventually(t, what, func() error {
		b, err := os.ReadFile(p)
		if err != nil || string(b) != want {
			return fmt.Errorf("read %q, %v; want %q", b, err, want)
		}
		return nil
	})
}

// eventuallyLists waits until directory p lists want (sorted names).
func eventuallyLists(t *testing.T, what, p, want string) {
	t.Helper()
	eventually(t, what, func() error {
		if got, err := lsNames(p); got != want || err != nil {
			return fmt.Errorf("ls = %q, %v; want %q", got, err, want)
		}
		return nil
	})
}

// eventuallyMode waits until file p has permissions perm.
func eventuallyMode(t *testing.T, what, p string, perm os.FileMode) {
	t.Helper()
	eventually(t, what, func() error {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != perm {
			return fmt.Errorf("stat: %v, %v; want %v", st.Mode(), err, perm)
		}
		return nil
	})
}

// eventuallyGone waits until p does not exist.
func eventuallyGone(t *testing.T, what, p string) {
	t.Helper()
	eventually(t, what, func() error {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			return fmt.Errorf("stat: %v; want not found", err)
		}
		return nil
	})
}

// lsNames lists a directory of the mount, sorted.
func lsNames(p string) (string, error) {
	ents, err := os.ReadDir(p)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return strings.Join(names, " "), nil
}

// TestNotifyShowsOutsideChanges: under udba=notify the kernel caches for
// a day, and changes made from outside to a read-only branch show at
// once: a file's content and mode, new and removed names (negative
// entries too), and new directories with their content.
func TestNotifyShowsOutsideChanges(t *testing.T) {
	tu := mountWithOptions(t, "udba=notify", map[string]string{"1:f": "old", "1:gone": "g", "1:d/x": "x", "0:top": "t"})
	// Fill the caches: names, a negative name, attributes, pages and
	// listings.
	if got := readFile(t, tu.m("f")); got != "old" {
		t.Fatalf("f = %q", got)
	}
	if _, err := os.Stat(tu.m("new")); !os.IsNotExist(err) {
		t.Fatalf("stat new: %v", err)
	}
	for _, d := range []string{"", "d"} {
		if _, err := lsNames(tu.m(d)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(tu.m("d/x")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(tu.m("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	lower := func(p string) string { return tu.b(1, p) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(lower("f"), []byte("new content"), 0o644))
	must(os.WriteFile(lower("new"), []byte("n"), 0o644))
	must(os.Remove(lower("gone")))
	must(os.WriteFile(lower("d/y"), []byte("y"), 0o644))
	must(os.MkdirAll(lower("nd/sub"), 0o755))
	must(os.WriteFile(lower("nd/sub/z"), []byte("z"), 0o644))
	must(os.Chmod(lower("d/x"), 0o600))

	eventuallyReads(t, "new content of f", tu.m("f"), "new content")
	eventuallyLists(t, "root listing", tu.m(""), "d f nd new top")
	eventuallyReads(t, "new name (negative entry dropped)", tu.m("new"), "n")
	eventuallyGone(t, "removed name", tu.m("gone"))
	eventuallyLists(t, "listing of d", tu.m("d"), "x y")
	eventuallyMode(t, "mode of d/x", tu.m("d/x"), 0o600)
	eventuallyReads(t, "new directory tree", tu.m("nd/sub/z"), "z")
	// A change deeper in the new directory shows too: a lookup marked it.
	must(os.WriteFile(lower("nd/sub/z2"), []byte("z2"), 0o644))
	eventuallyLists(t, "listing of nd/sub", tu.m("nd/sub"), "z z2")
	// Writes through the mount still land in the rw branch.
	if err := os.WriteFile(tu.m("f"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkCopied(t, tu, "f", "new content", "mine")
}

// outside runs a shell script in another process: a change made by the
// serving process itself to the rw branch counts as the union's own.
func outside(t *testing.T, script string) {
	t.Helper()
	if out, err := exec.Command("sh", "-ec", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// TestNotifyShowsOutsideChangesToRW: under udba=notify changes made from
// outside to the rw branch show too: new names (over cached negative
// entries), removed names, modes, whiteouts, names in directories the
// union made there (mkdir, copy-up, a renamed directory), names an
// opaque marker hid and, once the
// attribute timeout passed, content.
func TestNotifyShowsOutsideChangesToRW(t *testing.T) {
	tu := mountWithOptions(t, "udba=notify", map[string]string{"0:top": "t", "0:ud/u": "u", "1:low": "l", "1:ld/x": "x",
		"0:od/" + opqMarker: "", "1:od/hidden": "h"})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	absent := func(p string) {
		t.Helper()
		if _, err := os.Stat(tu.m(p)); !os.IsNotExist(err) {
			t.Fatalf("stat %s: %v", p, err)
		}
	}
	// Directories the union makes in the rw branch: by mkdir, by a
	// copy-up (of ld, for a new file in it) and by a rename.
	must(os.Mkdir(tu.m("nd"), 0o755))
	must(os.WriteFile(tu.m("ld/mine"), []byte("m"), 0o644))
	must(os.Mkdir(tu.m("r1"), 0o755))
	must(os.Rename(tu.m("r1"), tu.m("r2")))
	// Fill the caches, negative entries too.
	if got := readFile(t, tu.m("top")); got != "t" {
		t.Fatalf("top = %q", got)
	}
	for _, p := range []string{"new", "nd/y", "ld/y", "r2/y", "ud/y", "od/hidden"} {
		absent(p)
	}
	for _, d := range []string{"", "nd", "ld", "r2", "ud", "od"} {
		if _, err := lsNames(tu.m(d)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(tu.m("low")); err != nil {
		t.Fatal(err)
	}

	outside(t, "cd "+tu.b(0, "")+`
echo -n n > new
echo -n y > nd/y
echo -n y > ld/y
echo -n y > r2/y
echo -n y > ud/y
rm ud/u
chmod 600 top
touch .wh.low
rm od/`+opqMarker)

	eventuallyReads(t, "new name in the rw root", tu.m("new"), "n")
	eventuallyReads(t, "new name in a directory made by mkdir", tu.m("nd/y"), "y")
	eventuallyReads(t, "new name in a copied-up directory", tu.m("ld/y"), "y")
	eventuallyReads(t, "new name in a renamed directory", tu.m("r2/y"), "y")
	eventuallyLists(t, "listing of an rw directory", tu.m("ud"), "y")
	eventuallyLists(t, "listing of a copied-up directory", tu.m("ld"), "mine x y")
	eventuallyReads(t, "a name an opaque marker hid", tu.m("od/hidden"), "h")
	eventuallyMode(t, "mode of top", tu.m("top"), 0o600)
	eventuallyGone(t, "a file hidden by a new whiteout", tu.m("low"))
	// Content written from outside shows once the attribute timeout of
	// rw files (udba=reval's) passed.
	if got := readFile(t, tu.m("top")); got != "t" {
		t.Fatalf("top = %q", got)
	}
	outside(t, "echo -n changed >> "+tu.b(0, "top"))
	eventuallyReads(t, "content of top", tu.m("top"), "tchanged")
	eventually(t, "size of top", func() error {
		if st, err := os.Stat(tu.m("top")); err != nil || st.Size() != 8 {
			return fmt.Errorf("stat top: %v", err)
		}
		return nil
	})
	// The union's own changes still work as before.
	must(os.WriteFile(tu.m("nd/z"), []byte("z"), 0o644))
	eventuallyLists(t, "listing after a change through the mount", tu.m("nd"), "y z")
}

// The union's own changes to the rw branch are not taken for outside
// ones: a run of creates, writes, renames and removals through the mount
// applies no change, where one outside change is applied.
func TestNotifyIgnoresOwnChanges(t *testing.T) {
	tu := mountWithOptions(t, "udba=notify", map[string]string{"1:d/x": "x", "1:l": "l"})
	w := tu.srv.u.watcher
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(tu.m("n/m"), 0o755))
	for i := range 20 {
		must(os.WriteFile(tu.m(fmt.Sprintf("n/f%d", i)), []byte("f"), 0o644))
	}
	must(os.WriteFile(tu.m("d/y"), []byte("y"), 0o644)) // copies d up
	must(os.Chmod(tu.m("l"), 0o600))                    // copies l up
	must(os.Rename(tu.m("n"), tu.m("n2")))
	must(os.Remove(tu.m("d/x")))
	must(os.RemoveAll(tu.m("n2")))
	time.Sleep(50 * eventBatchDelay) // let the watcher read what it was sent
	if got := w.applied.Load(); got != 0 {
		t.Errorf("the union's own changes applied %d changes, want 0", got)
	}
	outside(t, "touch "+tu.b(0, "d/z"))
	eventually(t, "an outside change applied", func() error {
		if w.applied.Load() == 0 {
			return fmt.Errorf("no change applied")
		}
		return nil
	})
}

// A branch added at run time is watched from its root, and one removed
// is no longer.
func TestNotifyAddedBranch(t *testing.T) {
	tu := mountWithOptions(t, "udba=notify", map[string]string{"1:f": "f"})
	extra := t.TempDir()
	if err := tu.srv.AddBranch(Branch{Path: extra, Mode: RO}, 2); err != nil {
		t.Fatal(err)
	}
	if got, err := lsNames(tu.m("")); got != "f" || err != nil {
		t.Fatalf("ls = %q, %v", got, err)
	}
	if err := os.WriteFile(extra+"/e", []byte("e"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventuallyLists(t, "a name new in the added branch", tu.m(""), "e f")
	if err := tu.srv.DelBranch(extra); err != nil {
		t.Fatal(err)
	}
	if got, err := lsNames(tu.m("")); got != "f" || err != nil {
		t.Fatalf("after del: ls = %q, %v", got, err)
	}
}

// After the kernel dropped events (a queue overflow) every cached name
// is dropped: a change nothing reported shows.
func TestNotifyOverflowDropsAll(t *testing.T) {
	tu := mountWithOptions(t, "udba=notify", map[string]string{"1:d/x": "x"})
	if got, err := lsNames(tu.m("d")); got != "x" || err != nil {
		t.Fatalf("ls d = %q, %v", got, err)
	}
	if _, err := os.Stat(tu.m("d/y")); !os.IsNotExist(err) {
		t.Fatalf("stat d/y: %v", err)
	}
	w := tu.srv.u.watcher
	lower := tu.srv.u.branches[1]
	w.unwatch(lower) // the events of this change are lost
	if err := os.WriteFile(tu.b(1, "d/y"), []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tu.m("d/y")); !os.IsNotExist(err) {
		t.Fatalf("an unreported change showed (stat d/y: %v): the test proves nothing", err)
	}
	w.apply(nil, true)
	if b, err := os.ReadFile(tu.m("d/y")); err != nil || string(b) != "y" {
		t.Errorf("after an overflow d/y reads %q, %v", b, err)
	}
	if got, err := lsNames(tu.m("d")); got != "x y" || err != nil {
		t.Errorf("after an overflow ls d = %q, %v", got, err)
	}
}

// TestDefaultUdbaIsNotify: without udba= a mount watches its branches
// (a change from outside shows at once) and falls back to udba=reval
// where it cannot; an explicit udba= is taken as given.
func TestDefaultUdbaIsNotify(t *testing.T) {
	cases := []struct {
		opts             string
		notify, fallback bool
		timeout          time.Duration
	}{
		{"dirs=/a:/b", true, true, udbaNoneTimeout},
		{"dirs=/a:/b,udba=notify", true, false, udbaNoneTimeout},
		{"dirs=/a:/b,udba=reval", false, false, udbaRevalTimeout},
		{"dirs=/a:/b,udba=none", false, false, udbaNoneTimeout},
	}
	for _, c := range cases {
		spec, err := ParseOptions(c.opts)
		if err != nil {
			t.Fatal(err)
		}
		o := spec.Options
		if o.Notify != c.notify || o.RevalFallback != c.fallback || o.EntryTimeout != c.timeout || o.NegativeTimeout != c.timeout {
			t.Errorf("%s: notify %v, fallback %v, timeouts %v/%v; want %v, %v, %v", c.opts, o.Notify, o.RevalFallback, o.EntryTimeout, o.NegativeTimeout, c.notify, c.fallback, c.timeout)
		}
	}

	tu := mountDefaultWatched(t)
	mustExist(t, tu.m("f"))
	outsideFileShows(t, tu, "new")
}

// outsideFileShows makes name in the first read-only branch of tu from
// outside, after its absence is cached, and waits for the union to show
// it.
func outsideFileShows(t *testing.T, tu *testUnion, name string) {
	t.Helper()
	mustNotExist(t, tu.m(name))
	writeFile(t, tu.b(1, name), "")
	eventually(t, "a file made in the ro branch from outside shows", func() error {
		_, err := os.Stat(tu.m(name))
		return err
	})
}

// unwatchable is a directory fanotify cannot name files of (procfs has
// no file handles), so no branch watcher can mark it.
const unwatchable = "/proc/sys/kernel"

// needUnwatchable skips a test when unwatchable is missing.
func needUnwatchable(t *testing.T) {
	t.Helper()
	_, err := os.Stat(unwatchable)
	testenv.Need(t, err == nil, fmt.Sprintf("%s: %v", unwatchable, err))
}

// TestNotifyFallsBackToReval: where the branches cannot be watched (here
// one is a procfs directory; without CAP_SYS_ADMIN, or past
// fs.fanotify.max_user_groups, it is the group that cannot be made, and
// the same path follows), the default udba mounts as udba=reval: 1 s
// timeouts, a change from outside showing after them; an explicit
// udba=notify fails, naming the branch. (The group limit itself is not
// lowered here: it is the whole host's, and tests of other packages
// mount with udba=notify meanwhile.)
func TestNotifyFallsBackToReval(t *testing.T) {
	needFUSE(t)
	needUnwatchable(t)
	dir := t.TempDir()
	rw, lower, mnt := filepath.Join(dir, "rw"), filepath.Join(dir, "lower"), filepath.Join(dir, "mnt")
	for _, d := range []string{rw, lower, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tu := mountFallsBack(t, []Branch{{Path: rw, Mode: RW}, {Path: lower, Mode: RO}, {Path: unwatchable, Mode: RO}}, mnt, unwatchable)
	if _, err := os.Stat(tu.m("hostname")); err != nil {
		t.Errorf("the procfs branch through the union: %v", err)
	}
	outsideFileShows(t, tu, "new") // after udba=reval's timeout
}

// TestNotifyUnwatchableBranch: a branch fanotify cannot name files of is
// refused when added live to a watched union, which stays as it was.
func TestNotifyUnwatchableBranch(t *testing.T) {
	needUnwatchable(t)
	tu := mountDefaultWatched(t)
	before, fds := tu.srv.Branches(), rootFdCount(tu.srv.u)
	err := tu.srv.AddBranch(Branch{Path: unwatchable, Mode: RO}, -1)
	if err == nil || !strings.Contains(err.Error(), "cannot watch") {
		t.Errorf("adding %s to a watched union: %v; want it refused as unwatchable", unwatchable, err)
	}
	if got := tu.srv.Branches(); len(got) != len(before) {
		t.Errorf("stack after the refused add: %v, want %v", got, before)
	}
	if got := rootFdCount(tu.srv.u); got != fds {
		t.Errorf("the refused add left %d branch descriptors open, want %d", got, fds)
	}
}

// TestNotifyWatcherStops: unmounting a watched union ends the watcher's
// wait for events (it waits in poll(2), woken by an eventfd) and closes
// its fanotify group and eventfd.
func TestNotifyWatcherStops(t *testing.T) {
	tu := mountWithOptions(t, "udba=notify", map[string]string{"1:f": ""})
	w := tu.srv.u.watcher
	fdLink := func(fd int) string {
		target, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		return target
	}
	w.mu.Lock()
	group, wake := w.fd, w.wake
	w.mu.Unlock()
	if !strings.Contains(fdLink(group), "fanotify") || !strings.Contains(fdLink(wake), "eventfd") {
		t.Fatalf("watcher descriptors %d -> %q, %d -> %q; want a fanotify group and an eventfd", group, fdLink(group), wake, fdLink(wake))
	}
	tu.unmount(t)
	eventually(t, "the watcher stops", func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.running || w.fd >= 0 {
			return fmt.Errorf("running %v, group descriptor %d", w.running, w.fd)
		}
		return nil
	})
	for _, fd := range []int{group, wake} {
		if l := fdLink(fd); strings.Contains(l, "fanotify") || strings.Contains(l, "eventfd") {
			t.Errorf("descriptor %d still open: %q", fd, l)
		}
	}
}

// mountDefaultWatched mounts an rw branch over a read-only one holding f
// with the options a mount without any gets, and checks it watches its
// branches.
func mountDefaultWatched(t *testing.T) *testUnion {
	t.Helper()
	tu := mountWithOptions(t, "", map[string]string{"1:f": ""})
	if tu.srv.u.watcher == nil {
		t.Fatal("the default mount watches no branch")
	}
	return tu
}

// TestNotifyBranchWithSubmount: a branch with another mount inside it (a
// tmpfs here) cannot be watched whole: a default mount falls back to
// udba=reval, udba=notify fails naming the inner mount, and a watched
// union refuses it as a live addition.
func TestNotifyBranchWithSubmount(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	rw, lower, mnt := filepath.Join(dir, "rw"), filepath.Join(dir, "lower"), filepath.Join(dir, "mnt")
	sub := filepath.Join(lower, "sub")
	for _, d := range []string{rw, lower, sub, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })
	writeFile(t, filepath.Join(sub, "inner"), "")
	tu := mountFallsBack(t, []Branch{{Path: rw, Mode: RW}, {Path: lower, Mode: RO}}, mnt, sub)
	mustExist(t, tu.m("sub/inner"))
	tu.unmount(t)

	watched := mountDefaultWatched(t)
	err := watched.srv.AddBranch(Branch{Path: lower, Mode: RO}, -1)
	if err == nil || !strings.Contains(err.Error(), sub) {
		t.Errorf("adding a branch with a mount inside to a watched union: %v; want it refused naming %s", err, sub)
	}
}

// TestNotifyFUSEBranch: a branch on a file system whose files change
// without events here (another union, FUSE, here) cannot be watched: a
// default mount over it falls back to udba=reval, udba=notify fails
// naming the file system.
func TestNotifyFUSEBranch(t *testing.T) {
	inner := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": ""}, Options{})
	dir := t.TempDir()
	rw, mnt := filepath.Join(dir, "rw"), filepath.Join(dir, "mnt")
	for _, d := range []string{rw, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tu := mountFallsBack(t, []Branch{{Path: rw, Mode: RW}, {Path: inner.mnt, Mode: RO}}, mnt, "FUSE")
	mustExist(t, tu.m("f"))
}

// mountFallsBack checks that udba=notify refuses to mount branches at
// mnt, naming want, and that a mount without udba= falls back to
// udba=reval there; it returns that union, unmounted at the test's end.
func mountFallsBack(t *testing.T, branches []Branch, mnt, want string) *testUnion {
	t.Helper()
	explicit, err := ParseOptions("dirs=/a:/b,udba=notify")
	if err != nil {
		t.Fatal(err)
	}
	if srv, err := Mount(branches, mnt, explicit.Options); err == nil {
		_ = srv.Unmount()
		t.Fatalf("udba=notify mounted over %v", branches)
	} else if !strings.Contains(err.Error(), want) {
		t.Errorf("udba=notify over %v: %v; want it to name %s", branches, err, want)
	}
	spec, err := ParseOptions("dirs=/a:/b")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Mount(branches, mnt, spec.Options)
	if err != nil {
		t.Fatalf("default mount over %v: %v", branches, err)
	}
	tu := &testUnion{srv: srv, mnt: mnt}
	for _, b := range branches {
		tu.branches = append(tu.branches, b.Path)
	}
	t.Cleanup(func() { tu.unmount(t) })
	u := srv.u
	if u.watcher != nil || u.opts.Notify || u.opts.EntryTimeout != udbaRevalTimeout || u.opts.AttrTimeout != udbaRevalTimeout || u.opts.NegativeTimeout != udbaRevalTimeout {
		t.Fatalf("default mount over %v: watcher %v, notify %v, timeouts %v/%v/%v; want udba=reval's", branches, u.watcher, u.opts.Notify, u.opts.EntryTimeout, u.opts.AttrTimeout, u.opts.NegativeTimeout)
	}
	return tu
}

// mountWithOptions mounts an rw branch over a read-only one holding files
// (as mountUnion takes them) with the Options the mount option string
// opts gives, branches aside ("": a mount without options).
func mountWithOptions(t *testing.T, opts string, files map[string]string) *testUnion {
	t.Helper()
	spec, err := ParseOptions("dirs=/a:/b," + opts)
	if err != nil {
		t.Fatal(err)
	}
	return mountUnion(t, []Mode{RW, RO}, files, spec.Options)
}
