package unionfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCrashDuringCopyUp kills the daemon with SIGKILL while it copies a
// ~200 MB file up. After the dead mount is cleaned and the union
// mounted again the file is the whole lower or the whole upper version,
// and no temporary file is visible or left behind. The file has a
// second lower name in another directory (so the copy goes into the
// link index too): it stays the same file.
func TestCrashDuringCopyUp(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	rw, ro, mnt := filepath.Join(dir, "rw"), filepath.Join(dir, "ro"), filepath.Join(dir, "mnt")
	for _, d := range []string{rw, ro, mnt} {
		if err := os.Mkdir(d, 0755); err != nil {
			t.Fatal(err)
		}
	}
	const size = 200 << 20
	data := make([]byte, size)
	for i := 0; i < size; i += 8 {
		binary.LittleEndian.PutUint64(data[i:], uint64(i)*0x9E3779B97F4A7C15)
	}
	want := sha256.Sum256(data)
	if err := os.WriteFile(filepath.Join(ro, "big"), data, 0644); err != nil {
		t.Fatal(err)
	}
	data = nil
	if err := os.Mkdir(filepath.Join(ro, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(ro, "big"), filepath.Join(ro, "sub/big")); err != nil {
		t.Fatal(err)
	}

	caught := crashWhenNotEmpty(t, rw, ro, mnt, filepath.Join(rw, workName), "open", func() error {
		f, err := os.OpenFile(filepath.Join(mnt, "big"), os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		return err
	})
	work := filepath.Join(rw, workName)
	if !caught {
		t.Log("the copy-up finished before the kill; checking the result anyway")
	} else {
		t.Log("killed the daemon in the middle of the copy-up")
	}

	srv, err := Mount([]Branch{{Path: rw, Mode: RW}, {Path: ro, Mode: RO}}, mnt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Unmount() })
	got, err := os.ReadFile(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != want {
		t.Fatalf("file after crash is neither the lower nor a whole upper copy (%d bytes)", len(got))
	}
	if up, err := os.ReadFile(filepath.Join(rw, "big")); err == nil && !bytes.Equal(up, got) {
		t.Fatal("partial upper copy visible in the rw branch")
	}
	if names := listDir(t, mnt); len(names) != 2 || names[0] != "big" || names[1] != "sub" {
		t.Fatalf("ls after crash = %v", names)
	}
	a, b := statT(t, filepath.Join(mnt, "big")), statT(t, filepath.Join(mnt, "sub/big"))
	if a.Ino != b.Ino || a.Nlink != 2 || b.Nlink != 2 {
		t.Errorf("the two names after the crash: inode numbers %d, %d, nlink %d, %d; want one file, nlink 2", a.Ino, b.Ino, a.Nlink, b.Nlink)
	}
	if lower := statT(t, filepath.Join(ro, "big")); a.Ino != lower.Ino {
		t.Errorf("big after the crash: inode number %d, want its origin's %d (copied up or not)", a.Ino, lower.Ino)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "sub/big")); err != nil || sha256.Sum256(got) != want {
		t.Errorf("sub/big after the crash: %d bytes, %v; want the file", len(got), err)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Fatalf("stale temp files left in the work dir: %d", len(ents))
	}
}

// TestCrashDuringDirectoryRename kills the daemon while it copies a
// lower directory up for a rename: files with a second lower name
// outside the directory went into the link index on the way. After a
// remount the rename did not happen, and those names show the lower
// files with both their links (the index keeps no copy standing for a
// name it never reached).
func TestCrashDuringDirectoryRename(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	rw, ro, mnt := filepath.Join(dir, "rw"), filepath.Join(dir, "ro"), filepath.Join(dir, "mnt")
	for _, d := range []string{rw, ro + "/d", ro + "/e", mnt} {
		if err := os.MkdirAll(d, 0755); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20) // 48 MiB
	for i := range 4 {
		if err := os.WriteFile(fmt.Sprintf("%s/d/big%d", ro, i), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const linked = 20
	for i := range linked {
		p := fmt.Sprintf("%s/d/a%02d", ro, i)
		if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(p, fmt.Sprintf("%s/e/a%02d", ro, i)); err != nil {
			t.Fatal(err)
		}
	}

	caught := crashWhenNotEmpty(t, rw, ro, mnt, filepath.Join(rw, linkIndexName), "rename", func() error {
		return os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "d2"))
	})
	srv, err := Mount([]Branch{{Path: rw, Mode: RW}, {Path: ro, Mode: RO}}, mnt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Unmount() })
	_, errD := os.Lstat(filepath.Join(mnt, "d"))
	_, errD2 := os.Lstat(filepath.Join(mnt, "d2"))
	switch {
	case !caught:
		t.Log("the copy finished before an index entry was seen; checking the result anyway")
	case errD == nil && errD2 != nil:
		t.Log("killed the daemon in the middle of the copy")
	case errD != nil && errD2 == nil:
		t.Log("killed the daemon after the rename")
	default:
		t.Fatalf("after the crash: d %v, d2 %v; want one of them", errD, errD2)
	}
	from := "d"
	if errD != nil {
		from = "d2"
	}
	for i := range linked {
		for _, name := range []string{fmt.Sprintf("%s/a%02d", from, i), fmt.Sprintf("e/a%02d", i)} {
			st := statT(t, filepath.Join(mnt, name))
			if st.Nlink != 2 {
				t.Errorf("%s after the crash: nlink %d, want 2", name, st.Nlink)
			}
			want := fmt.Sprintf("%s/d/a%02d", ro, i)
			if got := readFile(t, filepath.Join(mnt, name)); got != want {
				t.Errorf("%s after the crash = %q, want %q", name, got, want)
			}
		}
	}
}

// crashWhenNotEmpty mounts rw over ro at mnt by a daemon of its own,
// runs op (what: its name) on the union, kills the daemon with SIGKILL
// once directory dir of a branch holds an entry (or op returned, or 20 s
// passed), and cleans up the dead mount. It reports whether dir was seen
// holding an entry.
func crashWhenNotEmpty(t *testing.T, rw, ro, mnt, dir, what string, op func() error) bool {
	t.Helper()
	cmd := startDaemon(t, rw, ro, mnt)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		lazyUnmount(mnt)
	})
	done := make(chan error, 1)
	go func() { done <- op() }()
	caught := false
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !caught {
		ents, _ := os.ReadDir(dir)
		caught = len(ents) > 0
		select {
		case <-done:
			deadline = time.Now()
		default:
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	lazyUnmount(mnt)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s on the dead mount never returned", what)
	}
	return caught
}

// TestRemovalCrashStates: removing an rw name a lower branch also has
// writes its whiteout beside it first, then removes it (a directory by
// moving it into the work directory whole). A mount after a crash
// between the two shows the rw entry still, as it was: a file with its
// data, a directory empty (the whiteouts it held still hide the lower
// names), never the lower entry behind it.
func TestRemovalCrashStates(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{
		"1:f": "lower f", "1:d/x": "x", "1:d/y": "y",
		"0:f": "upper f", "0:d/.wh.x": "", "0:d/.wh.y": "", "0:.wh.f": "", "0:.wh.d": "",
	}, Options{})
	if got := readFile(t, tu.m("f")); got != "upper f" {
		t.Errorf("f = %q, want the rw file", got)
	}
	if names := listDir(t, tu.m("d")); len(names) != 0 {
		t.Errorf("d lists %v, want nothing", names)
	}
	if names := listDir(t, tu.mnt); len(names) != 2 || names[0] != "d" || names[1] != "f" {
		t.Errorf("the root lists %v, want [d f]", names)
	}
	for _, p := range []string{"f", "d"} {
		if err := os.Remove(tu.m(p)); err != nil {
			t.Errorf("remove %s: %v", p, err)
		}
	}
	tu.unmount(t)
	tu.remount(t)
	if names := listDir(t, tu.mnt); len(names) != 0 {
		t.Errorf("after the removals the root lists %v", names)
	}
}
