package unionfs

import (
	"context"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

var (
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeMkdirer   = (*node)(nil)
	_ fs.NodeMknoder   = (*node)(nil)
	_ fs.NodeSymlinker = (*node)(nil)
	_ fs.NodeLinker    = (*node)(nil)
)

// prepareCreate checks that name can be created in directory n and
// copies n up. The caller holds u.ns exclusively. exclusive says the
// caller creates the rw entry with a call that fails with EEXIST on an
// existing name (open O_EXCL, mknod, symlink, link), so in a directory
// only the rw branch has the name needs no look. It returns n's (upper)
// entry and relative path.
func (n *node) prepareCreate(name string, exclusive bool) (*entry, string, syscall.Errno) {
	u := n.u
	if errno := u.checkName(name); errno != 0 {
		return nil, "", errno
	}
	pe, prel, errno := n.resolve()
	if errno != 0 {
		return nil, "", errno
	}
	if !pe.isDir() {
		return nil, "", syscall.ENOTDIR
	}
	if !exclusive || !pe.onlyIn(u.rw) {
		if _, errno := lookupIn(pe.layers, prel, name); errno == 0 {
			return nil, "", syscall.EEXIST
		}
	}
	if errno := u.ensureUpperDir(n); errno != 0 {
		return nil, "", errno
	}
	pe, prel, errno = n.resolve()
	return pe, prel, errno
}

// finishCreate removes a whiteout the new rw entry replaces and makes
// its node; pe and prel are n's entry and path as prepareCreate gave
// them. fresh says the rw entry is a new file (not a new name of an old
// one), so it gets a new inode number.
func (n *node) finishCreate(ctx context.Context, pe *entry, prel, name string, fresh bool, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.finishCreateStat(ctx, pe, prel, name, fresh, nil, out)
}

// finishCreateStat is finishCreate for an rw entry whose stat st the
// caller already has (nil: stat it here).
func (n *node) finishCreateStat(ctx context.Context, pe *entry, prel, name string, fresh bool, st *syscall.Stat_t, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	// A whiteout hides names of the branches below its own, so in a
	// directory only the rw branch has there is nothing for one to hide:
	// the union never writes one there, and one left by a removed
	// branch or from outside hides nothing. Looking for it would cost a
	// path walk per create.
	if !pe.onlyIn(u.rw) {
		if errno := u.removeWhiteout(prel, name); errno != 0 {
			return nil, errno
		}
	}
	p := u.rw.join(joinRel(prel, name))
	var full syscall.Stat_t
	if st != nil {
		full = *st
	} else if err := syscall.Lstat(p, &full); err != nil {
		return nil, errnoOf(err)
	}
	e := newEntry(u.rw, &full)
	if e.isDir() {
		e.layers = []*branch{u.rw}
		if le, ok := lowerHas(pe.layers, u.rw, prel, name); ok && le.isDir() && !exists(p+"/"+opqMarker) {
			e.layers = append(e.layers, le.layers...)
		}
	}
	if fresh {
		u.inos.fresh(e.st.key())
	}
	return u.childNode(ctx, n, e, &full, out), 0
}

// daemonIsRoot says the daemon may give new files the caller's owner.
var daemonIsRoot = os.Geteuid() == 0

func chownCaller(ctx context.Context, p string) {
	if c, ok := fuse.FromContext(ctx); ok && daemonIsRoot {
		_ = syscall.Lchown(p, int(c.Uid), int(c.Gid))
	}
}

// fchownCaller gives the new file open as fd the caller's owner, as
// chownCaller does, and leaves its stat in st. The chown is skipped when
// the file already has that owner (root creating as root).
func fchownCaller(ctx context.Context, fd int, st *syscall.Stat_t) syscall.Errno {
	if err := syscall.Fstat(fd, st); err != nil {
		return errnoOf(err)
	}
	c, ok := fuse.FromContext(ctx)
	if !ok || !daemonIsRoot || (st.Uid == c.Uid && st.Gid == c.Gid) {
		return 0
	}
	if syscall.Fchown(fd, int(c.Uid), int(c.Gid)) == nil {
		return errnoOf(syscall.Fstat(fd, st))
	}
	return 0
}

// Create makes a file in the rw branch and opens it.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	u.lockNS()
	pe, prel, errno := n.prepareCreate(name, true)
	if errno != 0 {
		u.ns.Unlock()
		return nil, nil, 0, errno
	}
	p := u.rw.join(joinRel(prel, name))
	// With passthrough the new file's handle will be one (no other
	// handle of it can be cached yet), and that needs a descriptor that
	// can read and write: open it so now rather than reopen it.
	oflags := backingFlags(flags)
	if u.opts.Passthrough {
		oflags = oflags&^syscall.O_ACCMODE | syscall.O_RDWR
	}
	fd, err := syscall.Open(p, oflags|syscall.O_CREAT|syscall.O_EXCL, mode)
	if err != nil {
		u.ns.Unlock()
		return nil, nil, 0, errnoOf(err)
	}
	var st syscall.Stat_t
	if errno := fchownCaller(ctx, fd, &st); errno != 0 {
		syscall.Close(fd)
		_ = syscall.Unlink(p)
		u.ns.Unlock()
		return nil, nil, 0, errno
	}
	ch, errno := n.finishCreateStat(ctx, pe, prel, name, true, &st, out)
	u.ns.Unlock()
	if errno != 0 {
		syscall.Close(fd)
		return nil, nil, 0, errno
	}
	cn := ch.Operations().(*node)
	cn.mu.Lock()
	gen := cn.copyGen
	cn.mu.Unlock()
	fh, fuseFlags, errno := cn.newHandleFd(fd, p, gen, nil, flags, u.opts.Passthrough)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, fh, fuseFlags, 0
}

// Mkdir makes a directory in the rw branch. Where a lower branch has a
// directory of that name (removed earlier, so whited out), the new one is
// opaque: the old contents stay hidden.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	u.lockNS()
	defer u.ns.Unlock()
	pe, prel, errno := n.prepareCreate(name, false)
	if errno != 0 {
		return nil, errno
	}
	tmp := u.tempName("mkdir")
	if err := syscall.Mkdir(tmp, mode); err != nil {
		return nil, errnoOf(err)
	}
	u.watchNewDir(tmp)
	chownCaller(ctx, tmp)
	if le, ok := lowerHas(pe.layers, u.rw, prel, name); ok && le.isDir() {
		if errno := makeOpaque(tmp); errno != 0 {
			_ = os.RemoveAll(tmp)
			return nil, errno
		}
	}
	if err := syscall.Rename(tmp, u.rw.join(joinRel(prel, name))); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, errnoOf(err)
	}
	return n.finishCreate(ctx, pe, prel, name, true, out)
}

// Mknod makes a device node, fifo or socket in the rw branch.
func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeEntry(ctx, name, out, func(p string) error { return syscall.Mknod(p, mode, int(rdev)) })
}

// Symlink makes a symbolic link in the rw branch.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeEntry(ctx, name, out, func(p string) error { return syscall.Symlink(target, p) })
}

// makeEntry creates name in the rw branch with mk (given the branch path),
// owned by the caller, and looks it up.
func (n *node) makeEntry(ctx context.Context, name string, out *fuse.EntryOut, mk func(p string) error) (*fs.Inode, syscall.Errno) {
	u := n.u
	u.lockNS()
	defer u.ns.Unlock()
	pe, prel, errno := n.prepareCreate(name, true)
	if errno != 0 {
		return nil, errno
	}
	p := u.rw.join(joinRel(prel, name))
	if err := mk(p); err != nil {
		return nil, errnoOf(err)
	}
	chownCaller(ctx, p)
	return n.finishCreate(ctx, pe, prel, name, true, out)
}

// Link copies the target up and hard-links it in the rw branch.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	tn, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if errno := u.checkName(name); errno != 0 {
		return nil, errno
	}
	u.lockNS()
	pe, prel, errno := n.prepareCreate(name, true)
	if errno != 0 {
		u.ns.Unlock()
		return nil, errno
	}
	if ok, errno := tn.linkTmpfile(u.rw.join(joinRel(prel, name))); ok {
		defer u.ns.Unlock()
		if errno != 0 {
			return nil, errno
		}
		tn.closeTmpfile()
		return n.finishCreate(ctx, pe, prel, name, false, out)
	}
	u.ns.Unlock()
	if errno := u.copyUp(ctx, tn, true); errno != 0 {
		return nil, errno
	}
	u.lockNS()
	defer u.ns.Unlock()
	pe, prel, errno = n.prepareCreate(name, true)
	if errno != 0 {
		return nil, errno
	}
	te, trel, errno := tn.resolve()
	if errno != 0 {
		return nil, errno
	}
	if te.top != u.rw {
		return nil, syscall.EIO
	}
	if err := syscall.Link(te.top.join(trel), u.rw.join(joinRel(prel, name))); err != nil {
		return nil, errnoOf(err)
	}
	return n.finishCreate(ctx, pe, prel, name, false, out)
}
