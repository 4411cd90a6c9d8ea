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
	var full syscall.Stat_t
	if st != nil {
		full = *st
	} else if err := u.rw.lstat(joinRel(prel, name), &full); err != nil {
		return nil, errnoOf(err)
	}
	e := newEntry(u.rw, &full)
	if e.isDir() {
		e.layers = []*branch{u.rw}
		if le, ok := lowerHas(pe.layers, u.rw, prel, name); ok && le.isDir() && !u.rw.exists(joinRel(prel, name)+"/"+opqMarker) {
			e.layers = append(e.layers, le.layers...)
		}
	}
	if fresh {
		ino := u.inos.fresh(e.st.key())
		u.retireNumber(ino) // a removed file's, reused by the branch
		return u.childNodeIno(ctx, n, e, &full, ino, out), 0
	}
	return u.childNode(ctx, n, pe.layers, prel, name, e, &full, out), 0
}

// daemonIsRoot says the daemon may give new files the caller's owner.
var daemonIsRoot = os.Geteuid() == 0

// callerOwner gives the owner of a file the caller makes in directory
// pe: the caller's user, and the caller's group unless pe is
// set-group-ID, where the file keeps the directory's group the branch
// gave it (gid -1). ok is false when the daemon cannot give owners.
func callerOwner(ctx context.Context, pe *entry) (uid, gid int, ok bool) {
	c, ok := fuse.FromContext(ctx)
	if !ok || !daemonIsRoot {
		return 0, 0, false
	}
	gid = int(c.Gid)
	if pe.st.Mode&syscall.S_ISGID != 0 {
		gid = -1
	}
	return int(c.Uid), gid, true
}

// chownCaller gives the new file at p the owner callerOwner says.
func chownCaller(ctx context.Context, pe *entry, p string) {
	if uid, gid, ok := callerOwner(ctx, pe); ok {
		_ = syscall.Lchown(p, uid, gid)
	}
}

// fchownCaller gives the new file open as fd, made with mode, the
// owner callerOwner says, and leaves its stat in st. The chown is
// skipped when the file already has that owner (root creating as root);
// set-user-ID and set-group-ID bits the chown clears are set again.
func fchownCaller(ctx context.Context, pe *entry, fd int, mode uint32, st *syscall.Stat_t) syscall.Errno {
	if err := syscall.Fstat(fd, st); err != nil {
		return errnoOf(err)
	}
	uid, gid, ok := callerOwner(ctx, pe)
	if !ok || (st.Uid == uint32(uid) && (gid == -1 || st.Gid == uint32(gid))) {
		return 0
	}
	if syscall.Fchown(fd, uid, gid) != nil {
		return 0
	}
	if mode&(syscall.S_ISUID|syscall.S_ISGID) != 0 {
		_ = syscall.Fchmod(fd, mode&07777)
	}
	return errnoOf(syscall.Fstat(fd, st))
}

// Create makes a file in the rw branch and opens it.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	u.lockNS()
	pe, prel, errno := n.prepareCreate(name, true)
	if errno != 0 {
		if errno == syscall.EEXIST {
			_, prel, _ = n.resolve()
		}
		u.ns.Unlock()
		return nil, nil, 0, createErrno(u, prel, flags, errno)
	}
	p, release, errno := u.rw.confine(joinRel(prel, name))
	if errno != 0 {
		u.ns.Unlock()
		return nil, nil, 0, errno
	}
	defer release()
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
		return nil, nil, 0, createErrno(u, prel, flags, errnoOf(err))
	}
	var st syscall.Stat_t
	if errno := fchownCaller(ctx, pe, fd, mode, &st); errno != 0 {
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
	fh, fuseFlags, errno := cn.newHandleFd(fd, gen, nil, flags, u.opts.Passthrough)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, fh, fuseFlags, 0
}

// createErrno is what a CREATE with open flags answers when making name
// in directory rel failed with errno. The kernel sends CREATE for a name
// it holds absent; one that exists after all was made behind its cache
// (or the union's, under udba=reval: from outside, within the timeout).
// Without O_EXCL open(2) must then open the file, never fail with
// EEXIST, and with the permission checks of an open, which the kernel
// skips on a file CREATE says it made: so the union forgets its
// listings of the directory and answers ESTALE, on which the kernel
// looks the name up again and opens what it finds.
func createErrno(u *ufs, rel string, flags uint32, errno syscall.Errno) syscall.Errno {
	if errno != syscall.EEXIST || flags&syscall.O_EXCL != 0 {
		return errno
	}
	if u.names != nil {
		u.names.forgetDir(rel)
	}
	return syscall.ESTALE
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
	// The directory is made in its parent, so the branch's file system
	// gives it what it inherits there: the group and set-group-ID bit of
	// a set-group-ID parent, and the parent's default ACL. One that must
	// be opaque (a lower directory of that name was removed) is made
	// under a hidden name (never listed, and removed with the parent's
	// whiteouts) and renamed into place once it is, so the lower names
	// never show in it, even after a crash.
	p, release, errno := u.rw.confine(joinRel(prel, name))
	if errno != 0 {
		return nil, errno
	}
	defer release()
	le, ok := lowerHas(pe.layers, u.rw, prel, name)
	opaque := ok && le.isDir()
	mk := p
	if opaque {
		mk = p[:len(p)-len(name)] + u.hiddenTempName("mkdir") // beside it
	}
	if err := syscall.Mkdir(mk, mode); err != nil {
		return nil, errnoOf(err)
	}
	u.watchNewDir(mk)
	chownCaller(ctx, pe, mk)
	if opaque {
		if errno := makeOpaque(mk); errno != 0 {
			_ = os.RemoveAll(mk)
			return nil, errno
		}
		if err := syscall.Rename(mk, p); err != nil {
			_ = os.RemoveAll(mk)
			return nil, errnoOf(err)
		}
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
	p, release, errno := u.rw.confine(joinRel(prel, name))
	if errno != 0 {
		return nil, errno
	}
	defer release()
	if err := mk(p); err != nil {
		return nil, errnoOf(err)
	}
	chownCaller(ctx, pe, p)
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
	p, release, errno := u.rw.confine(joinRel(prel, name))
	if errno != 0 {
		u.ns.Unlock()
		return nil, errno
	}
	defer release()
	if ok, errno := tn.linkTmpfile(p); ok {
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
	src, releaseSrc, errno := u.rw.confine(trel)
	if errno != 0 {
		return nil, errno
	}
	defer releaseSrc()
	dst, releaseDst, errno := u.rw.confine(joinRel(prel, name))
	if errno != 0 {
		return nil, errno
	}
	defer releaseDst()
	if err := syscall.Link(src, dst); err != nil {
		return nil, errnoOf(err)
	}
	return n.finishCreate(ctx, pe, prel, name, false, out)
}
