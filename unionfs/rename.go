package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

var _ fs.NodeRenamer = (*node)(nil)

// Rename moves files and directories across branches (never EXDEV). The
// source ends up in the rw branch under the new name; a lower directory
// is copied up with its merged contents; the old name is whited out when
// a lower branch still has it. RENAME_NOREPLACE is honoured, and
// RENAME_EXCHANGE swaps two names (see exchange).
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	u := n.u
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	switch flags {
	case 0, unix.RENAME_NOREPLACE:
	case unix.RENAME_EXCHANGE:
		return n.exchange(ctx, name, np, newName)
	default:
		return syscall.EINVAL
	}
	if isWhiteoutName(name) {
		return syscall.ENOENT
	}
	if errno := u.checkName(newName); errno != 0 {
		return errno
	}
	// Copy a file's data up before taking the namespace lock.
	if errno := n.copyUpChildFile(ctx, name); errno != 0 {
		return errno
	}

	u.lockNS()
	defer u.ns.Unlock()
	if errno := u.ensureUpperDirs(n, np); errno != 0 {
		return errno
	}
	pe, prel, errno := n.resolve()
	if errno != 0 {
		return errno
	}
	ne, nrel, errno := np.resolve()
	if errno != 0 {
		return errno
	}
	se, errno := lookupIn(pe.layers, prel, name)
	if errno != 0 {
		return errno
	}
	de, derr := lookupIn(ne.layers, nrel, newName)
	if derr == 0 {
		if flags&unix.RENAME_NOREPLACE != 0 {
			return syscall.EEXIST
		}
		if se.st.key() == de.st.key() {
			return 0 // two names of one file: nothing to do
		}
		if se.isDir() && !de.isDir() {
			return syscall.ENOTDIR
		}
		if !se.isDir() && de.isDir() {
			return syscall.EISDIR
		}
		if de.isDir() {
			names, errno := mergedNames(de.layers, joinRel(nrel, newName))
			if errno != 0 {
				return errno
			}
			if len(names) > 0 {
				return syscall.ENOTEMPTY
			}
		}
	}
	_, srcHasLower := lowerHas(pe.layers, u.rw, prel, name)
	dl, ok := lowerHas(ne.layers, u.rw, nrel, newName)
	dstHasLowerDir := ok && dl.isDir()
	srcPath, releaseSrc, errno := u.rw.confine(joinRel(prel, name))
	if errno != 0 {
		return errno
	}
	defer releaseSrc()
	dstPath, releaseDst, errno := u.rw.confine(joinRel(nrel, newName))
	if errno != 0 {
		return errno
	}
	defer releaseDst()

	// Whatever can fail for want of room in the rw branch (the
	// whiteout of the old name, a directory's copy, an opaque marker)
	// is made before anything the union shows changes, so a full
	// branch fails the rename with nothing changed.
	var wh *pendingWhiteout
	if srcHasLower {
		if wh, errno = u.prepareWhiteout(); errno != 0 {
			return errno
		}
		defer wh.discard()
	}
	var tree *treeCopy
	switch {
	case !se.isDir():
	case se.top == u.rw && len(se.layers) == 1:
		// No lower directory below it: a marker hides nothing yet.
		if dstHasLowerDir {
			if errno := u.rw.ensureOpaque(joinRel(prel, name)); errno != 0 {
				return errno
			}
		}
	default:
		// A directory with lower parts: copy its merged contents up.
		if tree, errno = u.copyTreeAside("mv", se, joinRel(prel, name)); errno != 0 {
			return errno
		}
		if dstHasLowerDir {
			if errno := makeOpaque(tree.tmp); errno != 0 {
				tree.abandon()
				return errno
			}
		}
	}
	// A directory replacing an rw one (empty in the union, it holds
	// only whiteouts) is swapped with it in one rename, and the old one
	// removed from the work directory after: were its whiteouts removed
	// first, a crash part way would show what they hide.
	replaceDir := derr == 0 && de.top == u.rw && de.isDir()
	if replaceDir {
		errno := u.rw.onlyWhiteouts(joinRel(nrel, newName))
		if errno == 0 {
			errno = u.ensureWorkDir() // where the old one goes
		}
		if errno != 0 {
			if tree != nil {
				tree.abandon()
			}
			return errno
		}
	}

	switch {
	case !se.isDir() && se.top != u.rw:
		if errno := u.placeLowerNow(se, joinRel(prel, name), dstPath, "", true); errno != 0 {
			return errno
		}
	case tree == nil && replaceDir:
		if err := unix.Renameat2(unix.AT_FDCWD, srcPath, unix.AT_FDCWD, dstPath, unix.RENAME_EXCHANGE); err != nil {
			return errnoOf(err)
		}
		if wh != nil { // before the old name is empty in the rw branch
			if errno := wh.place(prel, name); errno != 0 {
				return errno
			}
		}
		if u.removeAside(srcPath) != 0 { // the old destination
			_ = removeTree(srcPath)
		}
	case tree == nil:
		if err := syscall.Rename(srcPath, dstPath); err != nil {
			return errnoOf(err)
		}
	default:
		var err error
		if replaceDir {
			err = unix.Renameat2(unix.AT_FDCWD, tree.tmp, unix.AT_FDCWD, dstPath, unix.RENAME_EXCHANGE)
		} else {
			err = syscall.Rename(tree.tmp, dstPath)
		}
		if err != nil {
			tree.abandon()
			return errnoOf(err)
		}
		tree.commit()
		if replaceDir {
			_ = removeTree(tree.tmp) // the old destination
		}
		if se.top == u.rw && wh != nil {
			// The old name's whiteout goes in before its rw part goes,
			// which is then moved away whole: a crash leaves no mix of
			// the lower directory and what is left of the rw part.
			if errno := wh.place(prel, name); errno != 0 {
				return errno
			}
			if errno := u.removeAside(srcPath); errno != 0 {
				return errno
			}
		}
	}
	if derr == 0 && de.top == u.rw && !de.isDir() && de.st.Nlink <= 1 {
		u.numberGone(de.st.key())
	}
	if errno := u.removeWhiteout(nrel, newName); errno != 0 {
		return errno
	}
	if wh != nil && !wh.placed() {
		if errno := wh.place(prel, name); errno != 0 {
			return errno
		}
	}
	if derr == 0 && de.top != u.rw {
		u.links.whiteout(de) // the replaced lower name is hidden now
	}

	moved, err := lstatEntry(u.rw, dstPath)
	if err != nil {
		return errnoOf(err)
	}
	if ch := n.GetChild(name); ch != nil {
		u.numberCopy(dstPath, moved.st.key(), ch.StableAttr().Ino, joinRel(prel, name))
	} else {
		u.numberAs(dstPath, se.st.key(), moved.st.key(), joinRel(prel, name))
	}
	if moved.isDir() {
		u.dirGone(joinRel(prel, name))
		u.dirGone(joinRel(nrel, newName))
		moved.layers = []*branch{u.rw}
		// Everything below may have moved branch: resolve afresh.
		u.gen.Add(1)
	}
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			cn.mu.Lock()
			if cn.e != nil && cn.e.top != u.rw {
				cn.copyGen++
			}
			cn.e = moved
			cn.gen = u.gen.Load()
			cn.mu.Unlock()
		}
	}
	return 0
}

// copyUpChildFile copies up the data of n's child name, when the kernel
// knows it and it is not a directory, before a rename takes the
// namespace lock.
func (n *node) copyUpChildFile(ctx context.Context, name string) syscall.Errno {
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok && ch.Mode()&syscall.S_IFMT != syscall.S_IFDIR {
			return n.u.copyUp(ctx, cn, true)
		}
	}
	return 0
}

// exchange swaps name in n and newName in np (RENAME_EXCHANGE). Both
// become rw entries first: a file is copied up, and a directory with
// lower parts is flattened into an opaque rw copy of its merged
// contents (see flattenDir); then renameat2 swaps them in the rw branch
// at once. Both names still exist after, so whatever lower entries they
// had stay hidden; a directory that lands on a name a lower directory
// also has is made opaque.
func (n *node) exchange(ctx context.Context, name string, np *node, newName string) syscall.Errno {
	u := n.u
	if u.rw == nil {
		return syscall.EROFS
	}
	if isWhiteoutName(name) || isWhiteoutName(newName) {
		return syscall.ENOENT
	}
	if errno := n.copyUpChildFile(ctx, name); errno != 0 {
		return errno
	}
	if errno := np.copyUpChildFile(ctx, newName); errno != 0 {
		return errno
	}

	u.lockNS()
	defer u.ns.Unlock()
	if errno := u.ensureUpperDirs(n, np); errno != 0 {
		return errno
	}
	type side struct {
		parent    *node
		pe, e     *entry // the parent's entry and the name's
		rel, name string // the parent's path and the name
	}
	var sides [2]side
	for i, s := range []side{{parent: n, name: name}, {parent: np, name: newName}} {
		pe, prel, errno := s.parent.resolve()
		if errno != 0 {
			return errno
		}
		e, errno := lookupIn(pe.layers, prel, s.name)
		if errno != 0 {
			return errno
		}
		s.pe, s.rel, s.e = pe, prel, e
		sides[i] = s
	}
	if sides[0].e.st.key() == sides[1].e.st.key() {
		return 0 // two names of one file: nothing to swap
	}
	for _, s := range sides {
		if errno := u.makeRW(s.parent, s.e, s.rel, s.name); errno != 0 {
			return errno
		}
	}
	a, releaseA, errno := u.rw.confine(joinRel(sides[0].rel, name))
	if errno != 0 {
		return errno
	}
	defer releaseA()
	b, releaseB, errno := u.rw.confine(joinRel(sides[1].rel, newName))
	if errno != 0 {
		return errno
	}
	defer releaseB()
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		return errnoOf(err)
	}
	dirs := false
	for i, s := range sides {
		p := a
		if i == 1 {
			p = b
		}
		moved, err := lstatEntry(u.rw, p)
		if err != nil {
			return errnoOf(err)
		}
		if moved.isDir() {
			dirs = true
			if le, ok := lowerHas(s.pe.layers, u.rw, s.rel, s.name); ok && le.isDir() {
				if errno := u.rw.ensureOpaque(joinRel(s.rel, s.name)); errno != 0 {
					return errno
				}
			}
		}
		// The node that was at the other side's name is now here.
		other := sides[1-i]
		if ch := other.parent.GetChild(other.name); ch != nil {
			if cn, ok := ch.Operations().(*node); ok {
				cn.mu.Lock()
				cn.e = moved
				cn.gen = u.gen.Load()
				cn.mu.Unlock()
			}
		}
	}
	if dirs {
		for _, s := range sides {
			u.dirGone(joinRel(s.rel, s.name))
		}
		// Everything below may have moved branch: resolve afresh.
		u.gen.Add(1)
	}
	return 0
}

// makeRW makes name in directory parent (at rel), whose entry is e, an
// entry of the rw branch alone: a file is copied up, a directory with
// lower parts flattened. Its union inode number stays.
func (u *ufs) makeRW(parent *node, e *entry, rel, name string) syscall.Errno {
	if e.top == u.rw && (!e.isDir() || len(e.layers) == 1) {
		return 0
	}
	crel := joinRel(rel, name)
	p, release, errno := u.rw.confine(crel)
	if errno != 0 {
		return errno
	}
	defer release()
	if e.isDir() {
		if errno := u.flattenDir(e, crel); errno != 0 {
			return errno
		}
	} else if errno := u.placeLowerNow(e, crel, p, "", true); errno != 0 {
		return errno
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return errnoOf(err)
	}
	if ch := parent.GetChild(name); ch != nil {
		u.numberCopy(p, keyOf(&st), ch.StableAttr().Ino, crel)
		if cn, ok := ch.Operations().(*node); ok && !e.isDir() {
			cn.mu.Lock()
			cn.copyGen++
			cn.mu.Unlock()
		}
	} else {
		u.numberAs(p, e.st.key(), keyOf(&st), crel)
	}
	return 0
}

// flattenDir replaces the merged directory e at rel by an opaque rw
// directory holding its merged contents (rw files moved by hard links,
// lower ones copied), made aside and swapped into place.
func (u *ufs) flattenDir(e *entry, rel string) syscall.Errno {
	tree, errno := u.copyTreeAside("flat", e, rel)
	if errno != 0 {
		return errno
	}
	if errno := makeOpaque(tree.tmp); errno != 0 {
		tree.abandon()
		return errno
	}
	p, release, errno := u.rw.confine(rel)
	if errno != 0 {
		tree.abandon()
		return errno
	}
	defer release()
	if e.top != u.rw {
		if err := syscall.Rename(tree.tmp, p); err != nil {
			tree.abandon()
			return errnoOf(err)
		}
		tree.commit()
		return 0
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tree.tmp, unix.AT_FDCWD, p, unix.RENAME_EXCHANGE); err != nil {
		tree.abandon()
		return errnoOf(err)
	}
	tree.commit()
	return removeTree(tree.tmp) // the old rw directory, now aside
}

// ensureUpperDirs gives each of dirs an rw copy (see ensureUpperDir).
// The caller holds ns exclusively.
func (u *ufs) ensureUpperDirs(dirs ...*node) syscall.Errno {
	for _, d := range dirs {
		if errno := u.ensureUpperDir(d); errno != 0 {
			return errno
		}
	}
	return 0
}
