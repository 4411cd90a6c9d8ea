package unionfs

import (
	"os"
	"path/filepath"
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
	for _, root := range []string{tu.m("srv/site"), tu.b(0, "srv/site")} {
		first := statT(t, filepath.Join(root, "h1"))
		for _, n := range []string{"h1", "h2", "h3"} {
			p := filepath.Join(root, n)
			st := statT(t, p)
			if st.Ino != first.Ino || st.Nlink != 3 {
				t.Errorf("%s: ino %d nlink %d, want ino %d nlink 3", p, st.Ino, st.Nlink, first.Ino)
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
