package vfs

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/graphtest"
	"github.com/unionstack/unionstack/internal/fsutil"
	"github.com/unionstack/unionstack/internal/testenv"
)

// copyTree is a tree with every kind of entry CopyTree handles.
func copyTree() []graphtest.Entry {
	stamp := time.Date(2019, 1, 2, 3, 4, 5, 678901234, time.UTC)
	return []graphtest.Entry{
		graphtest.File("suid", "s", 0o755|os.ModeSetuid).Owner(1000, 1001).Xattr("security.capability", graphtest.CapNetBindService),
		graphtest.Dir("sticky", 0o777|os.ModeSticky).Owner(5, 6).Xattr("trusted.overlay.opaque", "y").ModTime(stamp),
		graphtest.File("sticky/f", "f", 0o640).Xattr("user.a", "1").ModTime(stamp),
		graphtest.File("h1", "linked", 0o600).Links(3),
		graphtest.Hardlink("sticky/h2", "h1"),
		graphtest.Hardlink("h3", "h1"),
		graphtest.Symlink("sym", "sticky/f").Owner(7, 8).Xattr("trusted.sym", "s").ModTime(stamp),
		graphtest.Symlink("sym-link", "elsewhere"),
		graphtest.Hardlink("sym-link2", "sym-link"),
		graphtest.Fifo("fifo", 0o620),
		graphtest.CharDev("null", 0o666, 1, 3),
		graphtest.BlockDev("loop", 0o660, 7, 42),
		graphtest.Sparse("sparse", 16<<20, "x", 0o644, 0, 8<<20),
		graphtest.File("empty", "", 0),
	}
}

// TestCopyTree copies a tree of every entry type and compares it, with
// atimes, and checks that sockets are skipped.
func TestCopyTree(t *testing.T) {
	testenv.NeedRoot(t)
	src := filepath.Join(t.TempDir(), "src")
	graphtest.WriteTree(t, src, copyTree()...)
	l, err := net.Listen("unix", filepath.Join(src, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	atime := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	ts := unix.NsecToTimespec(atime.UnixNano())
	mtime := unix.NsecToTimespec(time.Date(2002, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, "h1"), []unix.Timespec{ts, mtime}, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(src, 0o710); err != nil {
		t.Fatal(err)
	}

	dst := filepath.Join(t.TempDir(), "dst")
	if err := CopyTree(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t // before CheckTree reads h1 and moves its atime
	if err := unix.Lstat(filepath.Join(dst, "h1"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Atim != ts || st.Mtim != mtime {
		t.Errorf("h1 times: atime %v mtime %v, want %v %v", st.Atim, st.Mtim, ts, mtime)
	}
	graphtest.CheckTree(t, dst, copyTree()...)
	graphtest.CheckNames(t, dst, "empty", "fifo", "h1", "h3", "loop", "null", "sparse", "sticky", "suid", "sym", "sym-link", "sym-link2")
	if err := unix.Lstat(dst, &st); err != nil || st.Mode&0o7777 != 0o710 {
		t.Errorf("root of the copy: mode %#o (%v), want 0710", st.Mode&0o7777, err)
	}

	if err := CopyTree(context.Background(), src, dst); !errors.Is(err, os.ErrExist) {
		t.Errorf("copy onto an existing directory: %v, want it to exist already", err)
	}
	if err := CopyTree(context.Background(), filepath.Join(src, "h1"), filepath.Join(t.TempDir(), "x")); err == nil {
		t.Error("copy of a file as a tree: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := CopyTree(ctx, src, filepath.Join(t.TempDir(), "y")); !errors.Is(err, context.Canceled) {
		t.Errorf("copy with a cancelled context: %v", err)
	}
}

// TestDiskUsage counts inodes (hard links once) and blocks, as Usage does.
func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	graphtest.WriteTree(t, dir, graphtest.File("a", string(make([]byte, 100<<10)), 0o644),
		graphtest.Hardlink("b", "a"), graphtest.Dir("d", 0o755), graphtest.Sparse("s", 1<<30, "x", 0o644, 0))
	u, err := fsutil.DiskUsage(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Inodes != 4 { // root, a, d, s
		t.Errorf("inodes %d, want 4", u.Inodes)
	}
	if u.Size < 100<<10 || u.Size > 1<<20 {
		t.Errorf("size %d, want about 100 KiB (hard link once, holes free)", u.Size)
	}
}

// TestBackendErrors: bad options, ids and existing data are refused with
// clear errors; Remove of missing data and Cleanup work.
func TestBackendErrors(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if _, err := New(root, map[string]string{"size": "1G"}); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("open with an unknown option: %v", err)
	}
	if _, err := NewBackend(""); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("backend with an empty root: %v", err)
	}
	b, err := NewBackend(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "../x", "1/2", "a"} {
		if err := b.Create(ctx, graph.Snapshot{ID: id, Kind: graph.KindActive}); !errors.Is(err, graph.ErrInvalidArgument) {
			t.Errorf("create id %q: %v", id, err)
		}
		if err := b.Remove(ctx, id); !errors.Is(err, graph.ErrInvalidArgument) {
			t.Errorf("remove id %q: %v", id, err)
		}
	}
	if err := b.Create(ctx, graph.Snapshot{ID: "1", Kind: graph.KindActive}); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(ctx, graph.Snapshot{ID: "1", Kind: graph.KindActive}); !errors.Is(err, graph.ErrAlreadyExists) {
		t.Errorf("create an existing id: %v", err)
	}
	if err := b.Create(ctx, graph.Snapshot{ID: "2", Kind: graph.KindActive, ParentIDs: []string{"9"}}); err == nil {
		t.Error("create on a parent without data: no error")
	} else if _, err := os.Stat(b.snapshotDir("2")); !os.IsNotExist(err) {
		t.Errorf("failed create left %s behind (%v)", b.snapshotDir("2"), err)
	}
	if err := b.Create(ctx, graph.Snapshot{ID: "3", Kind: graph.KindView, ParentIDs: []string{"1"}}); err != nil {
		t.Fatal(err)
	}
	m, err := b.Mounts(ctx, graph.Snapshot{ID: "3", Kind: graph.KindView, ParentIDs: []string{"1"}})
	if err != nil || len(m) != 1 || m[0].Type != "bind" || m[0].Options[1] != "ro" {
		t.Errorf("mounts of a view: %v, %v", m, err)
	}
	if err := b.Remove(ctx, "77"); err != nil {
		t.Errorf("remove of missing data: %v", err)
	}
	if err := os.Mkdir(filepath.Join(root, "snapshots", "junk.tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := b.Cleanup(ctx, map[string]bool{"3": true}); err != nil {
		t.Fatal(err)
	}
	graphtest.CheckNames(t, filepath.Join(root, "snapshots"), "3")
}
