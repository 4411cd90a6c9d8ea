package unionfs

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

var (
	_ fs.NodeOpener = (*node)(nil)
)

func itoa(i int) string { return strconv.Itoa(i) }

// fdPath is the path descriptor fd was opened at, as /proc tells it now;
// false when /proc cannot tell or the file was removed since.
func fdPath(fd int) (string, bool) {
	p, err := os.Readlink("/proc/self/fd/" + itoa(fd))
	if err != nil || !filepath.IsAbs(p) || strings.HasSuffix(p, " (deleted)") {
		return "", false
	}
	return p, true
}

// openWrites reports whether an open with flags may change the file.
func openWrites(flags uint32) bool {
	return flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
}

// backingFlags are the flags the daemon opens a backing file with: no
// creation, no O_APPEND (the kernel sends explicit offsets), no O_DIRECT
// (the page cache is the kernel's; alignment is the caller's problem on
// the fuse side), never a controlling tty.
func backingFlags(flags uint32) int {
	f := int(flags) &^ (syscall.O_CREAT | syscall.O_EXCL | syscall.O_APPEND | syscall.O_NOCTTY | syscall.O_DIRECT | syscall.O_TRUNC)
	return f | syscall.O_CLOEXEC | syscall.O_NOFOLLOW
}

// Open copies the file up when the open can write, and returns a
// handle; see newHandle for how passthrough is decided.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if openWrites(flags) {
		if errno := n.u.copyUp(ctx, n, flags&syscall.O_TRUNC == 0); errno != 0 {
			return nil, 0, errno
		}
	}
	n.mu.Lock()
	gen := n.copyGen
	n.mu.Unlock()
	e, p, release, errno := n.where()
	if errno != 0 {
		return nil, 0, errno
	}
	defer release()
	upper := e.top == n.u.rw
	if openWrites(flags) && !upper {
		return nil, 0, syscall.EIO // never write a read-only branch
	}
	// An aliased lower name reads its group's copy, a file of the rw
	// branch.
	upper = upper || e.link != nil
	bflags := backingFlags(flags)
	if !upper {
		bflags = bflags&^syscall.O_ACCMODE | syscall.O_RDONLY
	}
	fd, err := syscall.Open(p, bflags, 0)
	if err != nil {
		return nil, 0, errnoOf(err)
	}
	if flags&syscall.O_TRUNC != 0 {
		if err := syscall.Ftruncate(fd, 0); err != nil {
			syscall.Close(fd)
			return nil, 0, errnoOf(err)
		}
	}
	var br *branch
	if !upper {
		br = e.top
	}
	fh, fuseFlags, errno := n.newHandle(fd, gen, br, flags)
	if errno == syscall.ESTALE {
		// The kernel inode's backing file is a lower file this open
		// must not use (passthrough=all). Its descriptors keep the
		// inode; the kernel retries the open with a fresh lookup, which
		// finds a new node.
		n.u.retire(n)
	}
	return fh, fuseFlags, errno
}

// newHandle wraps fd, a descriptor of the file in branch br (nil: the rw
// branch). Passthrough is decided per handle: a file in the rw branch
// may get one while no handle of the node is in the kernel's cached io
// mode (the kernel refuses to mix them); a handle that cannot be cached
// while passthrough handles are open is direct io. A lower (read-only)
// handle gets passthrough only with passthrough=all: the kernel keeps one
// backing file per inode, so once such a node is copied up, opens that
// must not see the lower file fail with ESTALE (the caller retires the
// node, see ufs.retire) and fd is closed. Nor does the first passthrough
// handle of a node opened while a release is being handled get one (see
// rawUnion.Release).
func (n *node) newHandle(fd int, gen uint64, br *branch, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return n.newHandleFd(fd, gen, br, flags, false)
}

// newHandleFd is newHandle; fdRW says fd is already open read-write
// (whatever flags ask), so a passthrough handle needs no reopen.
func (n *node) newHandleFd(fd int, gen uint64, br *branch, flags uint32, fdRW bool) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.newHandleMode(fd, gen, br, flags, fdRW)
	if errno != 0 {
		syscall.Close(fd)
		return nil, 0, errno
	}
	// The backing files are local: a close reports nothing a FLUSH
	// could, and no locks are served, so the kernel need not send one
	// per close (a round trip saved on every create and open).
	return fh, fuseFlags | fuse.FOPEN_NOFLUSH, 0
}

// newHandleMode is newHandle without the flags common to every handle.
func (n *node) newHandleMode(fd int, gen uint64, br *branch, flags uint32, fdRW bool) (fs.FileHandle, uint32, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ptOpen > 0 && n.lowerBacking != nil && (br != n.lowerBacking || gen != n.copyGen) {
		return nil, 0, syscall.ESTALE
	}
	h := &handle{n: n, fd: fd, gen: gen, br: br, flags: flags}
	if br != nil {
		n.u.branchOpen(br, 1)
	}
	if br != nil && n.u.ptLower && n.cachedOpen == 0 && gen == n.copyGen && (n.lowerBacking == br || n.ptOpen == 0 && n.u.raw.releasing.Load() == 0) {
		// fd is read-only: nothing written through the kernel's
		// backing file can reach the branch.
		h.mode = modePassthrough
		n.ptOpen++
		n.lowerBacking = br
		return &ptHandle{h}, 0, 0
	}
	// A node whose passthrough handles are open shares their backing
	// file (the kernel takes no other); one without gets its first only
	// while no release is in flight (see rawUnion.Release).
	if br == nil && n.u.opts.Passthrough && n.cachedOpen == 0 && (n.ptOpen > 0 || n.u.raw.releasing.Load() == 0) {
		// The kernel shares the first passthrough descriptor among all
		// handles of the inode, so it must be able to write.
		if flags&syscall.O_ACCMODE != syscall.O_RDWR && !fdRW {
			// Reopened through the descriptor: no path is walked again.
			rw, err := syscall.Open("/proc/self/fd/"+itoa(fd), backingFlags(flags)&^(syscall.O_ACCMODE|syscall.O_NOFOLLOW)|syscall.O_RDWR, 0)
			if err == nil {
				syscall.Close(h.fd)
				h.fd = rw
			}
		}
		if flags&syscall.O_ACCMODE == syscall.O_RDWR || fdRW || h.fd != fd {
			h.mode = modePassthrough
			n.ptOpen++
			return &ptHandle{h}, 0, 0
		}
	}
	if n.ptOpen > 0 {
		h.mode = modeDirect
		return h, fuse.FOPEN_DIRECT_IO, 0
	}
	h.mode = modeCached
	n.cachedOpen++
	if br != nil {
		// A lower file cannot change through the union before it is
		// copied up, and a copy-up's writes go through this same page
		// cache (they are cached too while this handle is open). An
		// outside change is caught by the kernel's auto_inval_data.
		return h, fuse.FOPEN_KEEP_CACHE, 0
	}
	return h, 0, 0
}
