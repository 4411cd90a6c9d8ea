package unionfs

import (
	"os"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// direntInos lists directory p with getdents and returns each name's
// d_ino.
func direntInos(t testing.TB, p string) map[string]uint64 {
	t.Helper()
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	out := map[string]uint64{}
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.ReadDirent(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n <= 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			d := (*syscall.Dirent)(unsafe.Pointer(&b[0]))
			name := b[19:d.Reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			out[string(name)] = d.Ino
			b = b[d.Reclen:]
		}
	}
}

// TestInodeNumbersSurviveRemount: with every branch on one file system
// a file's inode number is its own (of the file it was copied from, once
// copied up), so it holds across a copy-up and a remount, as kernel
// overlayfs's do, and a listing gives the same numbers as stat. The
// record a copy keeps of its number is the union's own attribute, never
// shown, set or copied; once its origin is gone from the branches below,
// a copy numbers as itself.
func TestInodeNumbersSurviveRemount(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{
		"1:f": "lower f", "1:d/g": "g", "1:d/sub/h": "h", "1:keep": "k",
	}, Options{Passthrough: true})
	names := []string{"f", "d", "d/g", "d/sub", "d/sub/h", "keep"}
	inos := map[string]uint64{}
	for _, name := range names {
		inos[name] = statT(t, tu.m(name)).Ino
		if own := statT(t, tu.b(1, name)).Ino; inos[name] != own {
			t.Errorf("%s: inode number %d, the lower file's is %d", name, inos[name], own)
		}
	}
	if err := os.WriteFile(tu.m("f"), []byte("copied up"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tu.m("d/sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tu.m("n"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tu.m("m"), 0o755); err != nil {
		t.Fatal(err)
	}
	names = append(names, "n", "m")
	inos["n"], inos["m"] = statT(t, tu.m("n")).Ino, statT(t, tu.m("m")).Ino
	check := func(when string) {
		t.Helper()
		for _, name := range names {
			if got := statT(t, tu.m(name)).Ino; got != inos[name] {
				t.Errorf("%s: %s has inode number %d, had %d", when, name, got, inos[name])
			}
		}
		for dir, list := range map[string][]string{"": {"f", "d", "keep", "n", "m"}, "d": {"g", "sub"}} {
			ents := direntInos(t, tu.m(dir))
			for _, name := range list {
				if got, want := ents[name], inos[joinRel(dir, name)]; got != want {
					t.Errorf("%s: %s is listed with inode number %d, stat says %d", when, joinRel(dir, name), got, want)
				}
			}
		}
	}
	check("mounted")
	tu.unmount(t)
	tu.remount(t)
	check("remounted")

	// The record is the union's.
	if err := unix.Lsetxattr(tu.m("f"), "user.x", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(tu.m("f"), buf)
	if err != nil || string(buf[:n]) != "user.x\x00" {
		t.Errorf("listxattr f: %q, %v; want only user.x", buf[:max(n, 0)], err)
	}
	if _, err := unix.Lgetxattr(tu.m("f"), originXattr, buf); err != unix.ENODATA {
		t.Errorf("getxattr %s: %v, want ENODATA", originXattr, err)
	}
	if err := unix.Lsetxattr(tu.m("keep"), originXattr, []byte("12345678"), 0); err != unix.EPERM {
		t.Errorf("setxattr %s: %v, want EPERM", originXattr, err)
	}
	if _, err := unix.Lgetxattr(tu.b(0, "f"), originXattr, buf); err != nil {
		t.Errorf("the copy of f keeps no record: %v", err)
	}

	// A lower file removed from outside may give its inode number to a
	// new file: its copy no longer answers with it.
	tu.unmount(t)
	if err := os.Remove(tu.b(1, "f")); err != nil {
		t.Fatal(err)
	}
	tu.remount(t)
	if got, own := statT(t, tu.m("f")).Ino, statT(t, tu.b(0, "f")).Ino; got != own {
		t.Errorf("f without its origin: inode number %d, want its own %d", got, own)
	}
}

// TestRenamedCopiesKeepNumbers: a copy renamed through the union (a
// lower file or directory moved, a copy moved again, a moved tree's
// files) keeps its origin's number across remounts too, while the rename
// hides the origin; once the origin shows again (its whiteout removed
// from outside) the copy numbers as itself, so no two files share one.
func TestRenamedCopiesKeepNumbers(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{
		"1:a": "a", "1:b": "b", "1:d/x": "x", "1:d/sub/y": "y",
	}, Options{})
	inos := map[string]uint64{}
	for _, name := range []string{"a", "b", "d", "d/x", "d/sub", "d/sub/y"} {
		inos[name] = statT(t, tu.m(name)).Ino
	}
	if err := os.WriteFile(tu.m("b"), []byte("b copied"), 0); err != nil {
		t.Fatal(err)
	}
	for _, mv := range [][2]string{{"a", "a2"}, {"b", "b2"}, {"b2", "b3"}, {"d", "e"}} {
		if err := os.Rename(tu.m(mv[0]), tu.m(mv[1])); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]uint64{"a2": inos["a"], "b3": inos["b"], "e": inos["d"], "e/x": inos["d/x"], "e/sub": inos["d/sub"], "e/sub/y": inos["d/sub/y"]}
	check := func(when string) {
		t.Helper()
		for name, ino := range want {
			if got := statT(t, tu.m(name)).Ino; got != ino {
				t.Errorf("%s: %s has inode number %d, want its origin's %d", when, name, got, ino)
			}
		}
	}
	check("mounted")
	tu.unmount(t)
	tu.remount(t)
	check("remounted")

	// The origin of a2 shows again: a2 is another file than a.
	tu.unmount(t)
	if err := os.Remove(tu.b(0, ".wh.a")); err != nil {
		t.Fatal(err)
	}
	tu.remount(t)
	if got := statT(t, tu.m("a")).Ino; got != inos["a"] {
		t.Errorf("a shows again with inode number %d, want its own %d", got, inos["a"])
	}
	if got, own := statT(t, tu.m("a2")).Ino, statT(t, tu.b(0, "a2")).Ino; got != own {
		t.Errorf("a2 beside its origin: inode number %d, want its own %d", got, own)
	}
}

// TestInodeNumbersAcrossFilesystems: with the rw branch on another file
// system (a tmpfs) than the read-only one, numbers are the union's own
// for the life of the mount: distinct for distinct files, one for a
// hard-link group, kept across copy-ups, and listed as stat gives them.
func TestInodeNumbersAcrossFilesystems(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	rw, ro, mnt := dir+"/rw", dir+"/ro", dir+"/mnt"
	for _, d := range []string{rw, ro + "/d", ro + "/e", mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", rw, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(rw, unix.MNT_DETACH) }) // after the union's unmount below
	for name, data := range map[string]string{"f": "f", "d/g": "g", "d/l1": "linked"} {
		if err := os.WriteFile(ro+"/"+name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(ro+"/d/l1", ro+"/e/l2"); err != nil {
		t.Fatal(err)
	}
	tu := &testUnion{mnt: mnt, branches: []string{rw, ro}, stack: []Branch{{Path: rw, Mode: RW}, {Path: ro, Mode: RO}}}
	tu.remount(t)
	t.Cleanup(func() { tu.unmount(t) })
	if tu.srv.u.inos.real {
		t.Fatal("branches on two file systems numbered by their own inode numbers")
	}
	names := []string{"f", "d", "e", "d/g", "d/l1", "e/l2"}
	inos := map[string]uint64{}
	for _, name := range names {
		inos[name] = statT(t, tu.m(name)).Ino
	}
	if inos["d/l1"] != inos["e/l2"] {
		t.Errorf("the two names of one lower file: %d and %d", inos["d/l1"], inos["e/l2"])
	}
	for _, change := range []func() error{
		func() error { return os.WriteFile(tu.m("f"), []byte("new"), 0) },
		func() error { return os.WriteFile(tu.m("d/l1"), []byte("new"), 0) },
		func() error { return os.Chmod(tu.m("d"), 0o700) },
		func() error { return os.WriteFile(tu.m("n"), []byte("made"), 0o644) },
	} {
		if err := change(); err != nil {
			t.Fatal(err)
		}
	}
	names = append(names, "n")
	inos["n"] = statT(t, tu.m("n")).Ino
	seen := map[uint64]string{}
	for _, name := range names {
		got := statT(t, tu.m(name)).Ino
		if got != inos[name] {
			t.Errorf("%s: inode number %d after the changes, was %d", name, got, inos[name])
		}
		if other, ok := seen[got]; ok && !(name == "e/l2" && other == "d/l1") {
			t.Errorf("%s and %s share inode number %d", name, other, got)
		}
		seen[got] = name
	}
	for dir, list := range map[string][]string{"": {"f", "d", "e", "n"}, "d": {"g", "l1"}, "e": {"l2"}} {
		ents := direntInos(t, tu.m(dir))
		for _, name := range list {
			if got, want := ents[name], inos[joinRel(dir, name)]; got != want {
				t.Errorf("%s is listed with inode number %d, stat says %d", joinRel(dir, name), got, want)
			}
		}
	}
}
