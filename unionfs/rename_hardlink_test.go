package unionfs

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestRenameLowerDirKeepsHardLinks renames a directory of a ro branch
// holding a three-name hard-link group: the copy-up must keep the group
// one inode (nlink 3) in the mount and in the rw branch.
func TestRenameLowerDirKeepsHardLinks(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	rw, ro, mnt := filepath.Join(dir, "rw"), filepath.Join(dir, "ro"), filepath.Join(dir, "mnt")
	for _, d := range []string{rw, ro, mnt, filepath.Join(ro, "srv/www")} {
		if err := os.MkdirAll(d, 0755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(ro, "srv/www/h1"), "linked")
	for _, n := range []string{"h2", "h3"} {
		if err := os.Link(filepath.Join(ro, "srv/www/h1"), filepath.Join(ro, "srv/www", n)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(ro, "srv/www/other"), "alone")
	srv, err := Mount([]Branch{{Path: rw, Mode: RW}, {Path: ro, Mode: RO}}, mnt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tu := &testUnion{srv: srv, mnt: mnt, branches: []string{rw, ro}}
	t.Cleanup(func() { tu.unmount(t) })

	before := statT(t, tu.m("srv/www/h1"))
	if before.Nlink != 3 {
		t.Fatalf("before rename: nlink %d, want 3", before.Nlink)
	}
	if err := os.Rename(tu.m("srv/www"), tu.m("srv/site")); err != nil {
		t.Fatalf("rename: %v", err)
	}
	mustNotExist(t, tu.m("srv/www"))
	// In the rw branch the link index holds a fourth link.
	for i, root := range []string{tu.m("srv/site"), tu.b(0, "srv/site")} {
		first := statT(t, filepath.Join(root, "h1"))
		nlink := uint64(3 + i)
		for _, n := range []string{"h1", "h2", "h3"} {
			p := filepath.Join(root, n)
			st := statT(t, p)
			if st.Ino != first.Ino || st.Nlink != nlink {
				t.Errorf("%s: ino %d nlink %d, want ino %d nlink %d", p, st.Ino, st.Nlink, first.Ino, nlink)
			}
			if got := readFile(t, p); got != "linked" {
				t.Errorf("%s = %q, want %q", p, got, "linked")
			}
		}
		other := statT(t, filepath.Join(root, "other"))
		if other.Ino == first.Ino || other.Nlink != 1 {
			t.Errorf("%s/other: ino %d nlink %d, want its own inode, nlink 1", root, other.Ino, other.Nlink)
		}
		if got := readFile(t, filepath.Join(root, "other")); got != "alone" {
			t.Errorf("%s/other = %q", root, got)
		}
	}
	if st := statT(t, tu.m("srv/site/h2")); st.Ino != before.Ino {
		t.Errorf("union inode changed by the rename: %d, was %d", st.Ino, before.Ino)
	}
	// One inode: a write through one name shows through the others.
	writeFile(t, tu.m("srv/site/h3"), "changed")
	if got := readFile(t, tu.m("srv/site/h1")); got != "changed" {
		t.Errorf("h1 after writing h3 = %q", got)
	}
}

// TestRenameMergedDirKeepsOutsideLinks renames a directory with parts in
// both branches, holding an rw file that has a second name outside it:
// the file must move, not be copied, so both names stay one inode with
// nlink 2, also when mounted anew. (Found by TestModelRandomOps: the
// copy-up gave the moved name a copy of its own.)
func TestRenameMergedDirKeepsOutsideLinks(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:d/lower": "l", "1:f": "data"}, Options{})
	if err := os.Link(tu.m("f"), tu.m("d/link")); err != nil { // f copied up, d now merged
		t.Fatal(err)
	}
	if err := os.Rename(tu.m("d"), tu.m("moved")); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		a, b := statT(t, tu.m("f")), statT(t, tu.m("moved/link"))
		if a.Ino != b.Ino || a.Nlink != 2 || b.Nlink != 2 {
			t.Errorf("%s: f and moved/link: inodes %d and %d, nlink %d and %d; want one inode, nlink 2", when, a.Ino, b.Ino, a.Nlink, b.Nlink)
		}
		if got := readFile(t, tu.m("moved/lower")); got != "l" {
			t.Errorf("%s: moved/lower = %q", when, got)
		}
	}
	check("after the rename")
	tu.unmount(t)
	tu.remount(t)
	check("mounted anew")
}

// TestCopyUpKeepsLowerHardLinks: a lower file with two names in one
// directory, written and chmodded through one of them, stays one file
// under both names, with nlink 2, in the mount and after a remount, and
// the read-only branch keeps the old data.
func TestCopyUpKeepsLowerHardLinks(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:d/f": "old"}, Options{Passthrough: true})
	if err := os.Link(tu.b(1, "d/f"), tu.b(1, "d/g")); err != nil {
		t.Fatal(err)
	}
	ino := statT(t, tu.m("d/g")).Ino
	if err := os.WriteFile(tu.m("d/f"), []byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tu.m("d/f"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, name := range []string{"d/f", "d/g"} {
			st := statT(t, tu.m(name))
			if got := readFile(t, tu.m(name)); got != "new" || st.Nlink != 2 || st.Mode&0o777 != 0o600 {
				t.Errorf("%s: %s = %q, nlink %d, mode %o; want new, 2, 600", when, name, got, st.Nlink, st.Mode&0o777)
			}
		}
		if a, b := statT(t, tu.m("d/f")).Ino, statT(t, tu.m("d/g")).Ino; a != b {
			t.Errorf("%s: inode numbers %d and %d differ", when, a, b)
		}
	}
	check("mounted")
	if got := statT(t, tu.m("d/f")).Ino; got != ino {
		t.Errorf("inode number %d after the copy-up, was %d", got, ino)
	}
	tu.unmount(t)
	tu.remount(t)
	check("after a remount")
	if got := readFile(t, tu.b(1, "d/g")); got != "old" {
		t.Errorf("the read-only branch changed: d/g = %q", got)
	}
}

// TestLinkIndexKeepsLowerGroups: a lower hard-link group with names in
// two directories stays one file after one name is copied up, while
// mounted and after a remount (the link index), whichever name is
// written or looked up first; its link count follows unlinks, links and
// renames through the union.
func TestLinkIndexKeepsLowerGroups(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:d/f": "old", "1:e/keep": "", "1:x/keep": ""}, Options{Passthrough: true})
	for _, name := range []string{"d/g", "e/h"} {
		if err := os.Link(tu.b(1, "d/f"), tu.b(1, name)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when, data string, nlink uint64, names ...string) {
		t.Helper()
		var ino uint64
		for i, name := range names {
			st := statT(t, tu.m(name))
			if got := readFile(t, tu.m(name)); got != data || st.Nlink != nlink {
				t.Errorf("%s: %s = %q, nlink %d; want %q, %d", when, name, got, st.Nlink, data, nlink)
			}
			if i == 0 {
				ino = st.Ino
			} else if st.Ino != ino {
				t.Errorf("%s: %s has inode number %d, %s %d", when, name, st.Ino, names[0], ino)
			}
		}
	}
	ino := statT(t, tu.m("e/h")).Ino
	if err := os.WriteFile(tu.m("d/f"), []byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	check("mounted", "new", 3, "d/f", "d/g", "e/h")
	if got := statT(t, tu.m("e/h")).Ino; got != ino {
		t.Errorf("inode number %d after the copy-up, was %d", got, ino)
	}
	tu.unmount(t)
	tu.remount(t)
	check("remounted, lower name first", "new", 3, "e/h", "d/g", "d/f")
	tu.unmount(t)
	tu.remount(t)
	check("remounted, copied name first", "new", 3, "d/f", "e/h", "d/g")

	// A write through another name links it up: no second copy.
	if err := os.WriteFile(tu.m("e/h"), []byte("newer"), 0); err != nil {
		t.Fatal(err)
	}
	check("after a write through e/h", "newer", 3, "d/f", "d/g", "e/h")
	// (The node of the group is shared by its names: which one the
	// link-up lands at is the name the kernel looked up last.)
	inos := map[uint64]bool{}
	for _, name := range []string{"d/f", "d/g", "e/h"} {
		if st, err := os.Lstat(tu.b(0, name)); err == nil {
			inos[st.Sys().(*syscall.Stat_t).Ino] = true
		}
	}
	if len(inos) != 1 {
		t.Errorf("rw branch: the group's names are %d files, want 1", len(inos))
	}
	if err := os.Remove(tu.m("d/g")); err != nil {
		t.Fatal(err)
	}
	check("after unlinking d/g", "newer", 2, "d/f", "e/h")
	if err := os.Link(tu.m("e/h"), tu.m("x/k")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tu.m("d/f"), tu.m("x/f2")); err != nil {
		t.Fatal(err)
	}
	check("after a link and a rename", "newer", 3, "x/f2", "e/h", "x/k")
	tu.unmount(t)
	tu.remount(t)
	check("remounted at last", "newer", 3, "x/k", "e/h", "x/f2")
	for _, gone := range []string{"d/f", "d/g"} {
		if _, err := os.Lstat(tu.m(gone)); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it gone", gone, err)
		}
	}
	names, err := os.ReadDir(tu.m(""))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range names {
		if isWhiteoutName(d.Name()) {
			t.Errorf("the union lists %s", d.Name())
		}
	}
	for _, name := range []string{"d/f", "d/g", "e/h"} {
		if got := readFile(t, tu.b(1, name)); got != "old" {
			t.Errorf("the read-only branch changed: %s = %q", name, got)
		}
	}
}

// TestWhiteoutOfLowerLinkCounts: removing one name of a lower hard-link
// group that was never copied up takes one off the link count of its
// other names, across a remount and a later copy-up.
func TestWhiteoutOfLowerLinkCounts(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:p/a": "x"}, Options{})
	for _, name := range []string{"p/b", "p/c"} {
		if err := os.Link(tu.b(1, "p/a"), tu.b(1, name)); err != nil {
			t.Fatal(err)
		}
	}
	nlink := func(when, name string, want uint64) {
		t.Helper()
		if got := statT(t, tu.m(name)).Nlink; got != want {
			t.Errorf("%s: %s has nlink %d, want %d", when, name, got, want)
		}
	}
	if err := os.Remove(tu.m("p/b")); err != nil {
		t.Fatal(err)
	}
	nlink("after unlinking p/b", "p/a", 2)
	tu.unmount(t)
	tu.remount(t)
	nlink("remounted", "p/a", 2)
	if err := os.WriteFile(tu.m("p/c"), []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	nlink("after a copy-up", "p/a", 2)
	if err := os.Remove(tu.m("p/a")); err != nil {
		t.Fatal(err)
	}
	nlink("after unlinking p/a", "p/c", 1)
	tu.unmount(t)
	tu.remount(t)
	nlink("remounted again", "p/c", 1)
	if got := readFile(t, tu.m("p/c")); got != "y" {
		t.Errorf("p/c = %q, want y", got)
	}
	// Once no name of the group is left, a mount drops its copy.
	if err := os.Remove(tu.m("p/c")); err != nil {
		t.Fatal(err)
	}
	tu.unmount(t)
	tu.remount(t)
	if ents, err := os.ReadDir(tu.b(0, linkIndexName)); err != nil || len(ents) != 0 {
		t.Errorf("link index after the group's last name went: %d entries, %v; want none", len(ents), err)
	}
}

// TestGroupCopyOutlivesItsName: once the name a group was copied up by
// is removed, the copy (left with the index's link alone) still serves
// the group's other lower names, with their count, also after a remount.
func TestGroupCopyOutlivesItsName(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:a": "x"}, Options{})
	for _, name := range []string{"b", "c"} {
		if err := os.Link(tu.b(1, "a"), tu.b(1, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(tu.m("a"), []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tu.m("a")); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, name := range []string{"b", "c"} {
			if got := statT(t, tu.m(name)).Nlink; got != 2 {
				t.Errorf("%s: %s has nlink %d, want 2", when, name, got)
			}
			if got := readFile(t, tu.m(name)); got != "y" {
				t.Errorf("%s: %s = %q, want the data written through a", when, name, got)
			}
		}
	}
	check("mounted")
	tu.unmount(t)
	tu.remount(t)
	check("remounted")
}

// TestLinkIndexAfterCrash: what a crash leaves of a copy-up of a lower
// hard-link group's name (the index is written before the copy is in
// place) is settled by the next mount: a copy that never reached its
// name is dropped, and the group's names show the lower file with all
// its links; one that did counts that name.
func TestLinkIndexAfterCrash(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:a": "lower", "1:x": "lower x", "1:p/": ""}, Options{})
	for _, l := range [][2]string{{"a", "b"}, {"x", "y"}, {"a", "p/c"}} {
		if err := os.Link(tu.b(1, l[0]), tu.b(1, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	tu.unmount(t)
	index := tu.b(0, linkIndexName)
	if err := os.Mkdir(index, 0o700); err != nil {
		t.Fatal(err)
	}
	entry := func(name string) string {
		st := statT(t, tu.b(1, name))
		return fmt.Sprintf("%s/%d-%d", index, st.Dev, st.Ino)
	}
	// Group a: the copy made, linked into the index, not yet renamed
	// to its name (the work directory is emptied at mount).
	if err := os.WriteFile(entry("a"), []byte("copy"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("3:0:p", entry("a")+".n"); err != nil {
		t.Fatal(err)
	}
	// Group x: the copy in place as x, the count not yet settled.
	if err := os.WriteFile(tu.b(0, "x"), []byte("copied x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(tu.b(0, "x"), entry("x")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("2:0:p", entry("x")+".n"); err != nil {
		t.Fatal(err)
	}
	tu.remount(t)
	for name, want := range map[string]string{"a": "lower", "b": "lower", "p/c": "lower", "x": "copied x", "y": "copied x"} {
		if got := readFile(t, tu.m(name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for name, want := range map[string]uint64{"a": 3, "b": 3, "p/c": 3, "x": 2, "y": 2} {
		if got := statT(t, tu.m(name)).Nlink; got != want {
			t.Errorf("%s: nlink %d, want %d", name, got, want)
		}
	}
	if _, err := os.Lstat(entry("a")); !os.IsNotExist(err) {
		t.Errorf("the copy that never reached its name is still in the index: %v", err)
	}
}

// TestLinkIndexIgnoresStrangers: names in the link index that are not
// its own (a file linked there from outside, with a count beside it)
// change nothing the union shows.
func TestLinkIndexIgnoresStrangers(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"0:f": "x", "0:.wh..wh.plnk/": ""}, Options{})
	tu.unmount(t)
	if err := os.Link(tu.b(0, "f"), tu.b(0, ".wh..wh.plnk/stray")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("9:0", tu.b(0, ".wh..wh.plnk/stray.n")); err != nil {
		t.Fatal(err)
	}
	tu.remount(t)
	if got := statT(t, tu.m("f")).Nlink; got != 2 {
		t.Errorf("f: nlink %d, want its own 2", got)
	}
}
