package unionfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
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

	cmd := startDaemon(t, rw, ro, mnt)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		lazyUnmount(mnt)
	})
	opened := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(filepath.Join(mnt, "big"), os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		opened <- err
	}()
	work := filepath.Join(rw, workName)
	caught := false
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(work)
		if len(ents) > 0 {
			caught = true
			break
		}
		select {
		case <-opened:
			deadline = time.Now()
		default:
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	lazyUnmount(mnt)
	select {
	case <-opened:
	case <-time.After(20 * time.Second):
		t.Fatal("open on the dead mount never returned")
	}
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
	if got, err := os.ReadFile(filepath.Join(mnt, "sub/big")); err != nil || sha256.Sum256(got) != want {
		t.Errorf("sub/big after the crash: %d bytes, %v; want the file", len(got), err)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Fatalf("stale temp files left in the work dir: %d", len(ents))
	}
}
