package graphtest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CapNetBindService is a security.capability value (VFS_CAP_REVISION_2,
// effective) granting cap_net_bind_service, as setcap would write it.
const CapNetBindService = "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// testOwnershipPermissions: owners and mode bits (setuid, setgid, sticky,
// 0000) survive layering; chown and chmod of a lower file in an upper
// layer keep its content.
func testOwnershipPermissions(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	stamp := time.Date(2020, 2, 29, 12, 34, 56, 789000000, time.UTC)
	base := []Entry{
		File("suid", "s", 0o755|os.ModeSetuid).Owner(1000, 1000),
		File("sgid", "g", 0o750|os.ModeSetgid).Owner(0, 5),
		File("both", "b", 0o755|os.ModeSetuid|os.ModeSetgid).Owner(0, 0),
		Dir("sticky", 0o777|os.ModeSticky),
		Dir("sgid-dir", 0o775|os.ModeSetgid).Owner(100, 101),
		File("private", "p", 0o600).Owner(1234, 5678),
		File("none", "", 0),
		Dir("ro-dir", 0o555),
		File("ro-dir/f", "f", 0o444).Owner(65534, 65534),
		Symlink("link", "suid").Owner(7, 8),
		File("dated", "d", 0o644).ModTime(stamp),
		Dir("dated-dir", 0o755).ModTime(stamp),
		File("dated-dir/in", "i", 0o644).ModTime(stamp),
	}
	CommitLayer(t, d, "base", "", base...)
	CheckTree(t, ViewTree(t, d, "base-view", "base"), base...)

	up := PrepareTree(t, d, "l1-active", "base")
	CheckTree(t, up, base...)
	must(t, os.Chmod(filepath.Join(up, "private"), 0o640), "chmod private")
	must(t, os.Lchown(filepath.Join(up, "suid"), 2000, 2001), "chown suid")
	must(t, os.Chmod(filepath.Join(up, "suid"), 0o711|os.ModeSetuid), "chmod suid")
	must(t, os.Lchown(filepath.Join(up, "link"), 9, 10), "lchown link")
	must(t, os.Chmod(filepath.Join(up, "sticky"), 0o770|os.ModeSticky), "chmod sticky")
	l1 := []Entry{
		File("private", "p", 0o640).Owner(1234, 5678),
		File("suid", "s", 0o711|os.ModeSetuid).Owner(2000, 2001),
		Symlink("link", "suid").Owner(9, 10),
		Dir("sticky", 0o770|os.ModeSticky),
		File("sgid", "g", 0o750|os.ModeSetgid).Owner(0, 5),
		File("ro-dir/f", "f", 0o444).Owner(65534, 65534),
		File("dated", "d", 0o644).ModTime(stamp),
	}
	CheckTree(t, up, l1...)
	Unmount(t, up)
	must(t, d.Commit(ctx, "l1", "l1-active"), "commit l1")
	CheckTree(t, ViewTree(t, d, "l1-view", "l1"), l1...)
	CheckTree(t, PrepareTree(t, d, "l2-active", "l1"), l1...)
}

// testXattrs: user.*, trusted.* and security.capability on files and
// directories survive layering, and can be changed and removed on lower
// files in an upper layer.
func testXattrs(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	base := []Entry{
		File("f", "x", 0o644).Xattr("user.color", "blue").Xattr("trusted.t", "tv").Xattr("user.empty", ""),
		File("bin/ping", "#!/bin/true\n", 0o755).Xattr("security.capability", CapNetBindService),
		Dir("d", 0o755).Xattr("user.dir", "dv").Xattr("trusted.dt", "1"),
		File("d/g", "g", 0o644).Xattr("user.big", string(make([]byte, 2000))),
	}
	CommitLayer(t, d, "base", "", base...)
	up := PrepareTree(t, d, "l1-active", "base")
	CheckTree(t, up, base...)
	WriteTree(t, up,
		File("f", "x", 0o644).Xattr("user.color", "red").NoXattr("trusted.t"),
		Dir("d", 0o755).Xattr("user.new", "n"),
		File("d/capped", "c", 0o755).Xattr("security.capability", CapNetBindService),
	)
	l1 := []Entry{
		File("f", "x", 0o644).Xattr("user.color", "red").Xattr("user.empty", "").NoXattr("trusted.t"),
		File("bin/ping", "#!/bin/true\n", 0o755).Xattr("security.capability", CapNetBindService),
		Dir("d", 0o755).Xattr("user.dir", "dv").Xattr("trusted.dt", "1").Xattr("user.new", "n"),
		File("d/capped", "c", 0o755).Xattr("security.capability", CapNetBindService),
		File("d/g", "g", 0o644).Xattr("user.big", string(make([]byte, 2000))),
	}
	CheckTree(t, up, l1...)
	Unmount(t, up)
	must(t, d.Commit(ctx, "l1", "l1-active"), "commit l1")
	CheckTree(t, ViewTree(t, d, "l1-view", "l1"), l1...)
	CheckTree(t, PrepareTree(t, d, "l2-active", "l1"), l1...)
	CheckTree(t, ViewTree(t, d, "base-view", "base"), base...)
}

// testHardlinksSpecial: hard links (one inode, right link count), links
// made in an upper layer, symlinks (relative, absolute, dangling, to a
// directory), fifos and device nodes survive layering.
func testHardlinksSpecial(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	base := []Entry{
		File("h1", "shared", 0o644).Links(3),
		Hardlink("h2", "h1"),
		Dir("dir", 0o755),
		Hardlink("dir/h3", "h1"),
		Symlink("rel", "h1"),
		Symlink("abs", "/etc/hostname"),
		Symlink("dangling", "no/such/target"),
		Symlink("dirlink", "dir"),
		Fifo("fifo", 0o640),
		Hardlink("fifo-link", "fifo"),
		CharDev("null", 0o666, 1, 3),
		BlockDev("loop", 0o660, 7, 200),
		File("single", "one", 0o644),
	}
	CommitLayer(t, d, "base", "", base...)
	up := PrepareTree(t, d, "l1-active", "base")
	CheckTree(t, up, base...)
	if data, err := os.ReadFile(filepath.Join(up, "rel")); err != nil || string(data) != "shared" {
		t.Errorf("read through symlink rel: %q, %v", data, err)
	}
	// New links in the upper layer, to a new file and to a lower one.
	WriteTree(t, up, File("n1", "new", 0o600), Hardlink("n2", "n1"), Hardlink("dir/n3", "n1"), Hardlink("h4", "single"))
	f, err := os.OpenFile(filepath.Join(up, "n2"), os.O_WRONLY|os.O_TRUNC, 0)
	must(t, err, "open n2")
	_, err = f.WriteString("written via n2")
	must(t, err, "write n2")
	must(t, f.Close(), "close n2")
	l1 := append(base[:len(base)-1:len(base)-1],
		File("n1", "written via n2", 0o600).Links(3), Hardlink("n2", "n1"), Hardlink("dir/n3", "n1"),
		File("single", "one", 0o644).Links(2), Hardlink("h4", "single"))
	CheckTree(t, up, l1...)
	Unmount(t, up)
	must(t, d.Commit(ctx, "l1", "l1-active"), "commit l1")
	view := ViewTree(t, d, "l1-view", "l1")
	CheckTree(t, view, l1...)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(view, "null"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Errorf("stat through the view of the device node: %v, mode %#o", err, st.Mode)
	}
}

// testSparseFiles: a sparse file keeps its holes (and its data) in a
// child snapshot and a view.
func testSparseFiles(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	const size = 64 << 20
	sparse := Sparse("sparse", size, "data!", 0o644, 0, 32<<20, size-5)
	CommitLayer(t, d, "base", "", sparse, File("plain", "p", 0o644))
	CheckTree(t, ViewTree(t, d, "base-view", "base"), sparse)
	up := PrepareTree(t, d, "l1-active", "base", File("plain", "p2", 0o644))
	CheckTree(t, up, sparse)
	Unmount(t, up)
	must(t, d.Commit(ctx, "l1", "l1-active"), "commit l1")
	CheckTree(t, ViewTree(t, d, "l1-view", "l1"), sparse)
}
