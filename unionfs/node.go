package unionfs

import (
	"bytes"
	"context"
	"math"
	"math/bits"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a file or directory of the union.
type node struct {
	fs.Inode
	u   *ufs
	ino uint64

	// copyMu serializes copy-ups of this node.
	copyMu sync.Mutex

	mu         sync.Mutex // guards the fields below; a leaf lock
	gen        uint64     // ufs.gen when e was computed
	e          *entry     // where the node lives, nil when unknown
	copyGen    uint64     // bumped when the node's backing file changes
	cachedOpen int32      // open handles in the kernel's cached io mode
	ptOpen     int32      // open handles in passthrough mode
	// lowerBacking is the read-only branch whose file is the kernel's
	// passthrough backing file of this inode (passthrough=all), nil when
	// the backing is in the rw branch or there is none.
	lowerBacking *branch
	// kgen is the generation this node was given to the kernel with; a
	// node retired by retire gives its name to a node of a higher one.
	kgen  uint32
	tmpFd int32     // 1 + descriptor of an unnamed (O_TMPFILE) file, else 0
	dir   *dirState // directories only, made on first use (dirLocked)
}

// dirState is what only the node of a directory holds. It hangs off the
// node, made when first needed: a union's nodes are mostly files, and
// the kernel keeps a node for every name it caches.
type dirState struct {
	fds []int // descriptors held by open directory handles
	// removed holds the attributes (nlink 0) of a directory removed
	// through the union, for an fstat of a descriptor the kernel opened
	// without a handle (zero-message opendir, see rawUnion).
	removed *syscall.Stat_t
	cache   dirCacheState
}

// dirLocked returns the directory state of n, making it. n.mu is held.
func (n *node) dirLocked() *dirState {
	if n.dir == nil {
		n.dir = &dirState{}
	}
	return n.dir
}

var (
	_ fs.NodeLookuper      = (*node)(nil)
	_ fs.NodeGetattrer     = (*node)(nil)
	_ fs.NodeSetattrer     = (*node)(nil)
	_ fs.NodeStatfser      = (*node)(nil)
	_ fs.NodeReadlinker    = (*node)(nil)
	_ fs.NodeGetxattrer    = (*node)(nil)
	_ fs.NodeSetxattrer    = (*node)(nil)
	_ fs.NodeListxattrer   = (*node)(nil)
	_ fs.NodeRemovexattrer = (*node)(nil)
	_ fs.NodeOnForgetter   = (*node)(nil)
)

func (n *node) setEntry(e *entry) {
	n.mu.Lock()
	n.e = e
	n.gen = n.u.gen.Load()
	n.mu.Unlock()
}

func (n *node) parentNode() (string, *node) {
	name, p := n.Parent()
	if p == nil {
		return "", nil
	}
	pn, _ := p.Operations().(*node)
	return name, pn
}

// resolve finds where n lives now. The caller holds u.ns (shared or
// exclusive). rel is n's path relative to every branch root.
func (n *node) resolve() (*entry, string, syscall.Errno) {
	if n == n.u.root {
		n.mu.Lock()
		e, gen := n.e, n.gen
		n.mu.Unlock()
		if e == nil || gen != n.u.gen.Load() {
			e = n.u.rootEntry()
			n.setEntry(e)
		}
		return e, "", 0
	}
	name, parent := n.parentNode()
	if parent == nil {
		return nil, "", syscall.ENOENT
	}
	pe, prel, errno := parent.resolve()
	if errno != 0 {
		return nil, "", errno
	}
	rel := joinRel(prel, name)
	// A file with more names shares its node among them, and its entry
	// may be that of another name than the one the node is reached by
	// now: looked up afresh.
	n.mu.Lock()
	e := n.e
	valid := e != nil && n.gen == n.u.gen.Load() && (e.st.Nlink <= 1 || e.isDir())
	n.mu.Unlock()
	if valid {
		return e, rel, 0
	}
	e, errno = lookupIn(pe.layers, prel, name)
	if errno != 0 {
		return nil, "", errno
	}
	n.setEntry(e)
	return e, rel, 0
}

// where resolves n under a shared namespace lock and returns its
// entry and a confined path of its top-most copy (see confine), valid
// until release is called.
func (n *node) where() (e *entry, p string, release func(), errno syscall.Errno) {
	n.u.ns.RLock()
	defer n.u.ns.RUnlock()
	e, rel, errno := n.resolve()
	if errno != 0 {
		return nil, "", nil, errno
	}
	if e.link != nil {
		p, release = e.link.path, noRelease // reached through the index's descriptor
	} else {
		p, release, errno = e.top.confine(rel)
	}
	if errno != 0 {
		return nil, "", nil, errno
	}
	return e, p, release, 0
}

func (u *ufs) rootEntry() *entry {
	var st syscall.Stat_t
	_ = syscall.Lstat(u.branches[0].path, &st)
	e := newEntry(u.branches[0], &st)
	e.layers = append([]*branch(nil), u.branches...)
	return e
}

// Lookup finds name through the stack.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if len(name) > n.u.nameMax {
		return nil, syscall.ENAMETOOLONG
	}
	if isWhiteoutName(name) {
		return nil, syscall.ENOENT
	}
	n.u.ns.RLock()
	defer n.u.ns.RUnlock()
	pe, prel, errno := n.resolve()
	if errno != 0 {
		return nil, errno
	}
	if !pe.isDir() {
		return nil, syscall.ENOTDIR
	}
	var st syscall.Stat_t
	e, errno := lookupInStat(pe.layers, prel, name, &st)
	if errno != 0 {
		return nil, errno
	}
	if n.u.watcher != nil && e.isDir() {
		n.u.watcher.watch(joinRel(prel, name), e.layers)
	}
	return n.u.childNode(ctx, n, pe.layers, prel, name, e, &st, out), 0
}

// childNode makes (or finds) the node of e, child name of parent (at
// prel, merged from layers); st is the stat of e's top-most copy. The
// caller holds u.ns.
func (u *ufs) childNode(ctx context.Context, parent *node, layers []*branch, prel, name string, e *entry, st *syscall.Stat_t, out *fuse.EntryOut) *fs.Inode {
	var ino uint64
	switch {
	case e.link != nil:
		// The group's number, also for a listing that saw the lower file.
		ino = u.inos.join(e.link.origin, e.st.key())
	case e.top == u.rw:
		ino = u.upperIno(e.st.key(), layers, prel, name)
	default:
		ino = u.inos.get(e.st.key())
	}
	return u.childNodeIno(ctx, parent, e, st, ino, out)
}

// childNodeIno is childNode for a child whose number is known.
func (u *ufs) childNodeIno(ctx context.Context, parent *node, e *entry, st *syscall.Stat_t, ino uint64, out *fuse.EntryOut) *fs.Inode {
	u.links.fixNlink(st)
	out.Attr.FromStat(st)
	out.Attr.Ino = ino
	u.setTimeouts(out, e.top)
	return u.newNode(ctx, parent.EmbeddedInode(), ino, e)
}

// setTimeouts sets the timeouts of an entry whose top-most copy is in
// branch top.
func (u *ufs) setTimeouts(out *fuse.EntryOut, top *branch) {
	out.SetEntryTimeout(u.opts.EntryTimeout)
	out.SetAttrTimeout(u.attrTimeout(top, out.Attr.Mode))
}

// attrTimeout is how long the kernel may keep the attributes of a file
// of mode whose top-most copy is in branch top (nil: not known). Under
// udba=notify a non-directory of the rw branch gets no more than the
// udba=reval timeout: writes to it from outside are not watched (see
// branchWatcher), and show once it passes.
func (u *ufs) attrTimeout(top *branch, mode uint32) time.Duration {
	if u.watcher != nil && (top == nil || top.isRW()) && mode&syscall.S_IFMT != syscall.S_IFDIR {
		return min(u.opts.AttrTimeout, udbaRevalTimeout)
	}
	return u.opts.AttrTimeout
}

// Getattr stats the top-most copy, or the open file.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := f.(fileHandle); ok {
		return h.base().getattr(out)
	}
	var st syscall.Stat_t
	e, p, release, errno := n.where()
	if errno == 0 {
		errno = errnoOf(syscall.Lstat(p, &st))
		release()
	}
	var top *branch
	if errno != 0 {
		if !n.statOpenDir(&st) {
			return errno
		}
	} else {
		top = e.top
		n.u.links.fixNlink(&st)
	}
	out.FromStat(&st)
	out.SetTimeout(n.u.attrTimeout(top, st.Mode))
	return 0
}

// upperPath copies n up and returns its confined path in the rw branch,
// valid until release is called.
func (n *node) upperPath(ctx context.Context, withData bool) (p string, release func(), errno syscall.Errno) {
	if errno := n.u.copyUp(ctx, n, withData); errno != 0 {
		return "", nil, errno
	}
	e, p, release, errno := n.where()
	if errno != 0 {
		return "", nil, errno
	}
	if e.top != n.u.rw {
		release()
		return "", nil, syscall.EIO
	}
	return p, release, 0
}

// Setattr copies up and changes mode, owner, size or times.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if h, ok := f.(fileHandle); ok && h.base().writable() {
		if errno := h.base().setattr(in); errno != 0 {
			return errno
		}
		errno := h.base().getattr(out)
		out.Ino = n.ino
		return errno
	}
	size, hasSize := in.GetSize()
	p, release, errno := n.upperPath(ctx, !(hasSize && size == 0))
	if errno != 0 {
		return errno
	}
	defer release()
	if errno := setattrPath(p, in); errno != 0 {
		return errno
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return errnoOf(err)
	}
	n.u.links.fixNlink(&st)
	out.FromStat(&st)
	out.Ino = n.ino
	out.SetTimeout(n.u.attrTimeout(n.u.rw, st.Mode))
	return 0
}

// setattrPath applies a SETATTR to the file at p, not following a symlink
// there: the mode is changed through a descriptor of the file itself
// (a symlink's mode means nothing), the size through one opened for
// writing without following.
func setattrPath(p string, in *fuse.SetAttrIn) syscall.Errno {
	return attrSetter{
		chmod: func(mode uint32) error {
			fd, err := syscall.Open(p, unix.O_PATH|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer syscall.Close(fd)
			var st syscall.Stat_t
			if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
				return err
			}
			return syscall.Chmod("/proc/self/fd/"+itoa(fd), mode)
		},
		chown: func(uid, gid int) error { return syscall.Lchown(p, uid, gid) },
		truncate: func(size int64) error {
			fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer syscall.Close(fd)
			return syscall.Ftruncate(fd, size)
		},
		utimes: func(ts []unix.Timespec) error {
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		},
	}.apply(in)
}

// attrSetter applies the parts of a SETATTR to one file, by path or by
// descriptor.
type attrSetter struct {
	chmod    func(mode uint32) error
	chown    func(uid, gid int) error // -1 leaves one unchanged
	truncate func(size int64) error
	utimes   func(ts []unix.Timespec) error
}

// apply sets mode, owner, size and times, in that order, as in asks.
func (s attrSetter) apply(in *fuse.SetAttrIn) syscall.Errno {
	if mode, ok := in.GetMode(); ok {
		if err := s.chmod(mode & 07777); err != nil {
			return errnoOf(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := s.chown(u, g); err != nil {
			return errnoOf(err)
		}
	}
	if sz, ok := in.GetSize(); ok {
		if err := s.truncate(int64(sz)); err != nil {
			return errnoOf(err)
		}
	}
	mt, mok := in.GetMTime()
	at, aok := in.GetATime()
	if !mok && !aok {
		return 0
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if aok {
		ts[0] = timespec(at, in.Valid&fuse.FATTR_ATIME_NOW != 0)
	}
	if mok {
		ts[1] = timespec(mt, in.Valid&fuse.FATTR_MTIME_NOW != 0)
	}
	return errnoOf(s.utimes(ts))
}

func timespec(t time.Time, now bool) unix.Timespec {
	if now {
		return unix.Timespec{Nsec: unix.UTIME_NOW}
	}
	return unix.NsecToTimespec(t.UnixNano())
}

// Statfs reports the rw branch (the top branch of a read-only union),
// with room left in the name limit for ".wh.".
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	n.u.ns.RLock()
	brs, top := n.u.branches, n.u.rw
	n.u.ns.RUnlock()
	if top == nil {
		top = brs[0]
	}
	if !n.u.opts.StatfsSum {
		brs = []*branch{top}
	}
	s, err := statfsSum(brs)
	if err != nil {
		return errnoOf(err)
	}
	out.FromStatfsT(&s)
	out.NameLen = uint32(n.u.nameMax)
	return 0
}

// statfsSum is the statfs of the file systems of brs added up, each
// counted once however many branches it holds (by device), in blocks of
// the smallest fragment size among them; the rest (name length, flags,
// fsid) is the first branch's.
func statfsSum(brs []*branch) (syscall.Statfs_t, error) {
	var sum syscall.Statfs_t
	seen := map[uint64]bool{}
	for i, b := range brs {
		if seen[b.dev] {
			continue
		}
		seen[b.dev] = true
		var s syscall.Statfs_t
		if err := syscall.Statfs(b.path, &s); err != nil {
			return sum, err
		}
		if s.Frsize <= 0 {
			s.Frsize = s.Bsize
		}
		if i == 0 {
			sum = s
			continue
		}
		if s.Frsize < sum.Frsize {
			scale := uint64(sum.Frsize / s.Frsize)
			sum.Blocks, sum.Bfree, sum.Bavail = satMul(sum.Blocks, scale), satMul(sum.Bfree, scale), satMul(sum.Bavail, scale)
			sum.Frsize = s.Frsize
		}
		scale := uint64(s.Frsize / sum.Frsize)
		sum.Blocks = satAdd(sum.Blocks, satMul(s.Blocks, scale))
		sum.Bfree = satAdd(sum.Bfree, satMul(s.Bfree, scale))
		sum.Bavail = satAdd(sum.Bavail, satMul(s.Bavail, scale))
		sum.Files = satAdd(sum.Files, s.Files)
		sum.Ffree = satAdd(sum.Ffree, s.Ffree)
	}
	return sum, nil
}

// satAdd and satMul add and multiply, stopping at the largest uint64.
func satAdd(a, b uint64) uint64 {
	if s, carry := bits.Add64(a, b, 0); carry == 0 {
		return s
	}
	return math.MaxUint64
}

func satMul(a, b uint64) uint64 {
	if hi, lo := bits.Mul64(a, b); hi == 0 {
		return lo
	}
	return math.MaxUint64
}

// Readlink reads the top-most symlink.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	_, p, release, errno := n.where()
	if errno != 0 {
		return nil, errno
	}
	defer release()
	buf := make([]byte, 4096)
	for {
		sz, err := syscall.Readlink(p, buf)
		if err != nil {
			return nil, errnoOf(err)
		}
		if sz < len(buf) {
			return buf[:sz], 0
		}
		buf = make([]byte, len(buf)*2)
	}
}

// Getxattr reads an attribute of the top-most copy.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if ownXattr(attr) {
		return 0, syscall.ENODATA
	}
	_, p, release, errno := n.where()
	if errno != 0 {
		return 0, errno
	}
	defer release()
	sz, err := unix.Lgetxattr(p, attr, dest)
	return uint32(sz), errnoOf(err)
}

// Listxattr lists the attributes of the top-most copy, but the union's
// own (see ownXattr). The daemon reads them as root, so trusted.* names
// are taken out of the list for any other caller, as Linux file systems
// (and kernel overlayfs) list them.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	_, p, release, errno := n.where()
	if errno != 0 {
		return 0, errno
	}
	defer release()
	c, ok := fuse.FromContext(ctx)
	root := !ok || c.Uid == 0
	list, errno := listXattrNames(p)
	if errno != 0 {
		return 0, errno
	}
	var out []byte
	for name := range bytes.SplitSeq(list, []byte{0}) {
		if len(name) > 0 && (root || !bytes.HasPrefix(name, []byte("trusted."))) && !ownXattr(string(name)) {
			out = append(append(out, name...), 0)
		}
	}
	if len(dest) == 0 {
		return uint32(len(out)), 0
	}
	if len(dest) < len(out) {
		return 0, syscall.ERANGE
	}
	return uint32(copy(dest, out)), 0
}

// listXattrNames reads the NUL-separated names of p's attributes.
func listXattrNames(p string) ([]byte, syscall.Errno) {
	for {
		sz, err := unix.Llistxattr(p, nil)
		if err != nil || sz == 0 {
			return nil, errnoOf(err)
		}
		buf := make([]byte, sz)
		sz, err = unix.Llistxattr(p, buf)
		if err == nil {
			return buf[:sz], 0
		}
		if err != syscall.ERANGE { // else the list grew between the calls
			return nil, errnoOf(err)
		}
	}
}

// Setxattr copies up and sets an attribute; the union's own are
// refused.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if ownXattr(attr) {
		return syscall.EPERM
	}
	p, release, errno := n.upperPath(ctx, true)
	if errno != 0 {
		return errno
	}
	defer release()
	return errnoOf(unix.Lsetxattr(p, attr, data, int(flags)))
}

// Removexattr copies up and removes an attribute.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if _, errno := n.Getxattr(ctx, attr, nil); errno != 0 {
		return errno
	}
	p, release, errno := n.upperPath(ctx, true)
	if errno != 0 {
		return errno
	}
	defer release()
	return errnoOf(unix.Lremovexattr(p, attr))
}

// OnForget drops n from the live-node table.
func (n *node) OnForget() {
	n.u.forget(n)
	n.closeTmpfile()
}
