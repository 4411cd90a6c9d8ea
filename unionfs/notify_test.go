package unionfs

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
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
	spec, err := ParseOptions("dirs=/a:/b,udba=notify")
	if err != nil {
		t.Fatal(err)
	}
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "old", "1:gone": "g", "1:d/x": "x", "0:top": "t"}, spec.Options)
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
	eventually(t, "removed name", func() error {
		if _, err := os.Stat(tu.m("gone")); !os.IsNotExist(err) {
			return fmt.Errorf("stat gone: %v", err)
		}
		return nil
	})
	eventuallyLists(t, "listing of d", tu.m("d"), "x y")
	eventually(t, "mode of d/x", func() error {
		st, err := os.Stat(tu.m("d/x"))
		if err != nil || st.Mode().Perm() != 0o600 {
			return fmt.Errorf("stat d/x: %v, %v", st.Mode(), err)
		}
		return nil
	})
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

// A branch added at run time is watched from its root, and one removed
// is no longer.
func TestNotifyAddedBranch(t *testing.T) {
	spec, err := ParseOptions("dirs=/a:/b,udba=notify")
	if err != nil {
		t.Fatal(err)
	}
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "f"}, spec.Options)
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
	spec, err := ParseOptions("dirs=/a:/b,udba=notify")
	if err != nil {
		t.Fatal(err)
	}
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:d/x": "x"}, spec.Options)
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
