package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

var _ fs.NodeTmpfiler = (*node)(nil)

// Tmpfile makes an unnamed file (O_TMPFILE) in the rw copy of directory
// n. It can be given a name later with linkat.
func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	if u.rw == nil {
		return nil, nil, 0, syscall.EROFS
	}
	u.lockNS()
	if errno := u.ensureUpperDir(n); errno != 0 {
		u.ns.Unlock()
		return nil, nil, 0, errno
	}
	pe, prel, errno := n.resolve()
	if errno != 0 {
		u.ns.Unlock()
		return nil, nil, 0, errno
	}
	bflags := backingFlags(flags) &^ syscall.O_NOFOLLOW
	dir, release, errno := u.rw.confineDir(prel)
	if errno != 0 {
		u.ns.Unlock()
		return nil, nil, 0, errno
	}
	fd, err := syscall.Open(dir, bflags|unix.O_TMPFILE, mode)
	release()
	u.ns.Unlock()
	if err != nil {
		return nil, nil, 0, errnoOf(err)
	}
	var st syscall.Stat_t
	if errno := fchownCaller(ctx, pe, fd, mode, &st); errno != 0 {
		syscall.Close(fd)
		return nil, nil, 0, errno
	}
	e := newEntry(u.rw, &st)
	keep, err := syscall.Dup(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, nil, 0, errnoOf(err)
	}
	ino := u.inos.fresh(e.st.key())
	u.retireNumber(ino) // a removed file's, reused by the branch
	out.Attr.FromStat(&st)
	out.Attr.Ino = ino
	u.setTimeouts(out, u.rw)
	ch := u.newNode(ctx, n.EmbeddedInode(), ino, e)
	cn := ch.Operations().(*node)
	cn.mu.Lock()
	cn.tmpFd = int32(keep) + 1
	cn.mu.Unlock()
	fh, fuseFlags, errno := cn.newHandle(fd, 0, nil, flags)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, fh, fuseFlags, 0
}

// linkTmpfile gives the unnamed file of n the rw path p. It reports
// false when n is not an unnamed file.
func (n *node) linkTmpfile(p string) (bool, syscall.Errno) {
	n.mu.Lock()
	fd := int(n.tmpFd) - 1
	n.mu.Unlock()
	if fd < 0 {
		return false, 0
	}
	return true, errnoOf(unix.Linkat(fd, "", unix.AT_FDCWD, p, unix.AT_EMPTY_PATH))
}

// closeTmpfile drops the descriptor kept for linking an unnamed file.
func (n *node) closeTmpfile() {
	n.mu.Lock()
	fd := int(n.tmpFd) - 1
	n.tmpFd = 0
	n.mu.Unlock()
	if fd >= 0 {
		syscall.Close(fd)
	}
}
