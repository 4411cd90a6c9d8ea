package unionfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFullRWBranch: with the rw branch out of space or out of inodes
// (a small tmpfs), every operation that needs room in it fails with
// ENOSPC and changes nothing: the union shows what it showed before and
// the rw branch holds what it held (no temporary copy, half-copied tree,
// whiteout or link-index entry left behind), also after a remount. Once
// room is made the same operations succeed.
func TestFullRWBranch(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	rw, ro, mnt := dir+"/rw", dir+"/ro", dir+"/mnt"
	for _, d := range []string{rw, ro + "/tree/sub", mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// 1 MiB and 64 inodes: the tree below takes 1.2 MiB to copy.
	if err := unix.Mount("tmpfs", rw, "tmpfs", 0, "size=1m,nr_inodes=64,mode=755"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(rw, unix.MNT_DETACH) }) // after the union's unmount below
	files := map[string]string{
		"small":      "small\n",
		"tree/sub/y": "y\n",
		"big":        strings.Repeat("b", 2<<20),
	}
	for i := range 12 {
		files[fmt.Sprintf("tree/f%02d", i)] = strings.Repeat(string(rune('a'+i)), 100<<10)
	}
	for name, data := range files {
		if err := os.WriteFile(ro+"/"+name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(ro+"/small", ro+"/tree/small2"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"emptydir", "d2"} {
		if err := os.Mkdir(ro+"/"+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(ro+"/d2/z", []byte("z"), 0o644); err != nil {
		t.Fatal(err)
	}
	tu := &testUnion{mnt: mnt, branches: []string{rw, ro}, stack: []Branch{{Path: rw, Mode: RW}, {Path: ro, Mode: RO}}}
	tu.remount(t)
	t.Cleanup(func() { tu.unmount(t) })

	// mustFailClean runs op, which must fail with ENOSPC and leave the
	// union and the rw branch as they were.
	// The union's own directories and whiteout base are made on first
	// need, by whichever operation comes first.
	branchTree := func() map[string]string {
		tree := modelTree(t, rw)
		for _, own := range []string{workName, workName + "/" + whiteoutBaseName, linkIndexName} {
			delete(tree, own)
		}
		return tree
	}
	mustFailClean := func(what string, op func() error) {
		t.Helper()
		union, branch, inos := modelTree(t, mnt), branchTree(), unionInos(t, mnt)
		err := op()
		if !errors.Is(err, unix.ENOSPC) {
			t.Errorf("%s: got %v, want ENOSPC", what, err)
		}
		if d := treeDiff(union, modelTree(t, mnt)); len(d) > 0 {
			t.Errorf("%s changed the union:\n%s", what, strings.Join(d, "\n"))
		}
		// The kernel forgets its inodes, so the union numbers each
		// name afresh.
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
			t.Fatal(err)
		}
		if d := treeDiff(inos, unionInos(t, mnt)); len(d) > 0 {
			t.Errorf("%s changed inode numbers:\n%s", what, strings.Join(d, "\n"))
		}
		if d := treeDiff(branch, branchTree()); len(d) > 0 {
			t.Errorf("%s left in the rw branch:\n%s", what, strings.Join(d, "\n"))
		}
	}

	// Names the rw branch holds as well as a lower one: a file and a
	// directory copied up, and a directory whose lower file was removed.
	for _, p := range []string{"tree/f03", "emptydir"} {
		if err := os.Chmod(tu.m(p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(tu.m("d2/z")); err != nil {
		t.Fatal(err)
	}

	// Out of space: copy-ups bigger than the branch.
	mustFailClean("copy-up of a 2 MiB file", func() error {
		f, err := os.OpenFile(tu.m("big"), os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			f.Close()
		}
		return err
	})
	mustFailClean("rename of a 1.2 MiB lower directory", func() error {
		return os.Rename(tu.m("tree"), tu.m("tree2"))
	})
	mustFailClean("exchange of a 1.2 MiB lower directory with another", func() error {
		return unix.Renameat2(unix.AT_FDCWD, tu.m("tree"), unix.AT_FDCWD, tu.m("emptydir"), unix.RENAME_EXCHANGE)
	})
	mustFailClean("rename of a 1.2 MiB lower directory over an emptied one", func() error {
		return unix.Rename(tu.m("tree"), tu.m("d2")) // os.Rename refuses an existing directory
	})

	// Out of inodes: fill the branch through the union.
	if err := os.Mkdir(tu.m("fill"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		fd, err := unix.Open(tu.m(fmt.Sprintf("fill/%d", i)), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
		if errors.Is(err, unix.ENOSPC) {
			break
		}
		if err != nil || i > 1000 {
			t.Fatalf("filling the rw branch, file %d: %v", i, err)
		}
		unix.Close(fd)
	}
	needRoom := map[string]func() error{
		"create":               func() error { return os.WriteFile(tu.m("new"), nil, 0o644) },
		"mkdir":                func() error { return os.Mkdir(tu.m("newdir"), 0o755) },
		"symlink":              func() error { return os.Symlink("small", tu.m("sl")) },
		"mknod fifo":           func() error { return unix.Mkfifo(tu.m("fifo"), 0o644) },
		"unlink of lower file": func() error { return os.Remove(tu.m("small")) },
		"unlink in lower dir":  func() error { return os.Remove(tu.m("tree/sub/y")) },
		"chmod of lower file":  func() error { return os.Chmod(tu.m("tree/f00"), 0o600) },
		"setxattr":             func() error { return unix.Setxattr(tu.m("tree/f01"), "user.k", []byte("v"), 0) },
		"link of lower file":   func() error { return os.Link(tu.m("tree/small2"), tu.m("small3")) },
		"rename of lower file": func() error { return os.Rename(tu.m("tree/f02"), tu.m("f02")) },
		"rename of lower dir":  func() error { return os.Rename(tu.m("tree/sub"), tu.m("sub")) },
		"open for write":       func() error { return os.WriteFile(tu.m("small"), []byte("new"), 0) },
		// The rw name goes, a whiteout must come: none can.
		"unlink of copied-up file": func() error { return os.Remove(tu.m("tree/f03")) },
		"rename of copied-up file": func() error { return os.Rename(tu.m("tree/f03"), tu.m("f03")) },
		"rmdir of copied-up dir":   func() error { return os.Remove(tu.m("emptydir")) },
	}
	for what, op := range needRoom {
		mustFailClean(what, op)
	}

	// Room again: the same operations go through.
	if err := os.RemoveAll(tu.m("fill")); err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"create", "mkdir", "symlink", "mknod fifo", "chmod of lower file", "setxattr",
		"link of lower file", "rename of lower file", "unlink in lower dir", "rename of lower dir",
		"rename of copied-up file", "rmdir of copied-up dir"} {
		if err := needRoom[what](); err != nil {
			t.Errorf("%s with room: %v", what, err)
		}
	}
	if err := os.Remove(tu.m("small")); err != nil {
		t.Errorf("unlink of lower file with room: %v", err)
	}
	want := modelTree(t, mnt)
	for _, gone := range []string{"small", "tree/f02", "tree/sub", "sub/y", "tree/f03", "emptydir"} {
		if _, ok := want[gone]; ok {
			t.Errorf("%s still listed after its removal or rename", gone)
		}
	}
	if got := readFile(t, tu.m("small3")); got != "small\n" {
		t.Errorf("small3 = %q", got)
	}
	tu.unmount(t)
	tu.remount(t)
	if d := treeDiff(want, modelTree(t, mnt)); len(d) > 0 {
		t.Errorf("after a remount:\n%s", strings.Join(d, "\n"))
	}
	// Nothing of the failed attempts stayed behind in the union's own
	// directories: the work directory holds at most the whiteout base,
	// the link index the one group linked up with room.
	for dir, allowed := range map[string][]string{workName: {whiteoutBaseName}, linkIndexName: nil} {
		ents, err := os.ReadDir(filepath.Join(rw, dir))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var left []string
		for _, e := range ents {
			if !slices.Contains(allowed, e.Name()) {
				left = append(left, e.Name())
			}
		}
		if dir == linkIndexName && len(left) == 2 && left[0]+".n" == left[1] {
			continue
		}
		if len(left) > 0 {
			t.Errorf("%s holds %v", dir, left)
		}
	}
}

// unionInos maps every name below root to its inode number.
func unionInos(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		out[p] = fmt.Sprint(st.Ino)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}
