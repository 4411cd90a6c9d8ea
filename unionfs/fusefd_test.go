package unionfs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestServeUnionFailureClosesDescriptor: a /dev/fuse descriptor handed
// to serveUnion as "/dev/fd/N" is closed by go-fuse when the connection
// cannot be served (here: unmounted, so the kernel's INIT is gone), and
// the union's duplicate with it, which is why no caller closes N after a
// failure (a second close could hit a descriptor opened meanwhile).
func TestServeUnionFailureClosesDescriptor(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	rw, mnt := filepath.Join(dir, "rw"), filepath.Join(dir, "mnt")
	for _, d := range []string{rw, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	u, root, fsopts, err := newUnion([]Branch{{Path: rw, Mode: RW}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fd, err := mountOwn(mnt, fsopts.MountOptions)
	if err != nil {
		u.closeBranchRoots()
		t.Fatal(err)
	}
	// Unmounting aborts the connection: go-fuse's read of INIT fails.
	if err := unix.Unmount(mnt, 0); err != nil {
		unix.Close(fd)
		u.closeBranchRoots()
		t.Fatal(err)
	}
	fsopts.MountOptions.DirectMount = false
	fsopts.MountOptions.DirectMountStrict = false
	if _, err := serveUnion(u, root, fmt.Sprintf("/dev/fd/%d", fd), fsopts); err == nil {
		t.Fatal("serveUnion of an unmounted connection: no error")
	}
	// Closed, or (if another goroutine got the number since) no longer
	// the connection.
	if target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err == nil && target == "/dev/fuse" {
		unix.Close(fd)
		t.Fatalf("descriptor %d is still open on /dev/fuse after the failure", fd)
	}
	u.connMu.Lock()
	kept := u.connFd
	u.connMu.Unlock()
	if kept >= 0 {
		t.Errorf("the union still keeps duplicate %d of the failed connection", kept)
	}
}
