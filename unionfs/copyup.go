package unionfs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// copyUp makes sure n lives in the rw branch. A file's data (when
// withData) is copied into a temporary name in the work directory and
// renamed into place, so a crash never leaves a partial file visible.
func (u *ufs) copyUp(ctx context.Context, n *node, withData bool) syscall.Errno {
	if u.rw == nil {
		return syscall.EROFS
	}
	n.copyMu.Lock()
	defer n.copyMu.Unlock()

	u.ns.RLock()
	e, rel, errno := n.resolve()
	u.ns.RUnlock()
	if errno != 0 {
		return errno
	}
	if e.top == u.rw {
		return 0
	}
	if e.isDir() {
		u.lockNS()
		defer u.ns.Unlock()
		_, errno := u.copyUpDir(n)
		return errno
	}
	// The data is copied before the namespace is locked; a name whose
	// group has a copy already is linked to it under the lock.
	var tmp string
	if e.link == nil {
		if tmp, _, errno = u.copyToTemp(e.top, rel, withData); errno != 0 {
			return errno
		}
	}
	u.lockNS()
	defer u.ns.Unlock()
	e2, rel2, errno := n.resolve()
	if errno == 0 && e2.top == u.rw {
		removeTemp(tmp)
		return 0
	}
	if errno != 0 {
		removeTemp(tmp)
		return errno
	}
	var parentOrigin *syscall.Stat_t
	if _, parent := n.parentNode(); parent != nil {
		if parentOrigin, errno = u.copyUpDir(parent); errno != 0 {
			removeTemp(tmp)
			return errno
		}
	}
	dst, release, errno := u.rw.confine(rel2)
	if errno != 0 {
		removeTemp(tmp)
		return errno
	}
	defer release()
	if tmp != "" && u.inos.real {
		// The number goes with the copy into place, so a crash leaves
		// no copy numbered as itself (numberCopy then finds it there).
		setOrigin(tmp, n.ino, rel2)
	}
	if errno := u.placeLowerNow(e2, rel2, dst, tmp, withData); errno != 0 {
		return errno
	}
	restoreTimes(parentDir(dst), parentOrigin)
	ne, err := lstatEntry(u.rw, dst)
	if err != nil {
		return errnoOf(err)
	}
	u.numberCopy(dst, ne.st.key(), n.ino, rel2)
	n.mu.Lock()
	n.e = ne
	n.gen = u.gen.Load()
	n.copyGen++
	n.mu.Unlock()
	return 0
}

// placement says what placeLower did to the link index, which the
// caller settles (linkIndex.settle) once the placement is final: at once,
// or for a directory's copy once the copy is in place (treeCopy).
type placement struct {
	kind  placementKind
	group *linkGroup // placedIndexed: the group, pending until settled
	copy  devIno     // placedLinked: the group's copy linked to
}

// placementKind is what a placement did.
type placementKind int

const (
	placedAlone   placementKind = iota // a copy of its own, not in the index
	placedIndexed                      // a copy, added to the index as its group's
	placedLinked                       // a link of its group's copy
)

// placeLowerNow is placeLower for a placement that is final at once.
func (u *ufs) placeLowerNow(e *entry, rel, dst, tmp string, withData bool) syscall.Errno {
	placed, errno := u.placeLower(e, rel, dst, tmp, withData)
	if errno == 0 {
		u.links.settle(placed)
	}
	return errno
}

// placeLower puts a copy of e, a lower non-directory at rel, at dst in
// the rw branch, replacing what dst held. A name whose hard-link group
// was copied up already is linked to that copy (under a temporary name
// first, as link(2) replaces nothing); otherwise tmp, a copy of e the
// caller made in the work directory (or, when "", one made here), is
// renamed to dst, after it went into the link index when e has more
// names (where it can). It removes tmp when it fails. The caller holds
// u.ns exclusively, and settles the placement (see placement).
func (u *ufs) placeLower(e *entry, rel, dst, tmp string, withData bool) (placement, syscall.Errno) {
	if e.link != nil {
		removeTemp(tmp)
		var errno syscall.Errno
		if tmp, errno = u.tempName("ln"); errno != 0 {
			return placement{}, errno
		}
		if err := syscall.Link(e.link.path, tmp); err != nil {
			return placement{}, errnoOf(err)
		}
		if err := syscall.Rename(tmp, dst); err != nil {
			removeTemp(tmp)
			return placement{}, errnoOf(err)
		}
		return placement{kind: placedLinked, copy: e.st.key()}, 0
	}
	if tmp == "" {
		var errno syscall.Errno
		if tmp, _, errno = u.copyToTemp(e.top, rel, withData); errno != 0 {
			return placement{}, errno
		}
	}
	// The index is kept where the rw branch's file system can: one
	// that cannot link leaves the group's other names lower, as before.
	var g *linkGroup
	if e.st.Nlink > 1 && u.links != nil {
		g, _ = u.links.add(tmp, &e.st)
	}
	if err := syscall.Rename(tmp, dst); err != nil {
		removeTemp(tmp)
		if g != nil {
			u.links.remove(e.st.key())
		}
		return placement{}, errnoOf(err)
	}
	if g != nil {
		u.gen.Add(1) // the group's other names resolve to the copy now
		return placement{kind: placedIndexed, group: g}, 0
	}
	return placement{}, 0
}

// removeTemp removes a temporary copy, if there is one.
func removeTemp(tmp string) {
	if tmp != "" {
		_ = os.RemoveAll(tmp)
	}
}

// ensureUpperDir copies directory n (and its missing parents) up into the
// rw branch with mode, owner, times and xattrs. The caller holds u.ns
// exclusively.
func (u *ufs) ensureUpperDir(n *node) syscall.Errno {
	_, errno := u.copyUpDir(n)
	return errno
}

// parentDir is the directory holding p, a path (confined or not) that
// names a file in it, as a path to give a call that acts on the
// directory itself (not on a /proc/self/fd link).
func parentDir(p string) string { return filepath.Dir(p) + "/." }

// restoreTimes gives rw directory p the times of its origin, which the
// copy-up of a child into it changed. A nil origin means p was not
// copied up just now, and its times are left alone.
func restoreTimes(p string, origin *syscall.Stat_t) {
	if origin == nil {
		return
	}
	ts := []unix.Timespec{unix.Timespec(origin.Atim), unix.Timespec(origin.Mtim)}
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// copyUpDir is ensureUpperDir; when it copied n just now it returns
// the stat of n's origin.
func (u *ufs) copyUpDir(n *node) (*syscall.Stat_t, syscall.Errno) {
	e, rel, errno := n.resolve()
	if errno != 0 {
		return nil, errno
	}
	if e.top == u.rw {
		return nil, 0
	}
	if !e.isDir() {
		return nil, syscall.ENOTDIR
	}
	var parentOrigin *syscall.Stat_t
	if _, parent := n.parentNode(); parent != nil {
		if parentOrigin, errno = u.copyUpDir(parent); errno != 0 {
			return nil, errno
		}
	}
	tmp, origin, errno := u.copyToTemp(e.top, rel, false)
	if errno != 0 {
		return nil, errno
	}
	if origin.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		// Replaced from outside since it was looked up (by a symlink,
		// say): nothing below it is copied through it.
		_ = os.RemoveAll(tmp)
		return nil, syscall.ENOTDIR
	}
	u.watchNewDir(tmp)
	dst, release, errno := u.rw.confine(rel)
	if errno != 0 {
		_ = os.RemoveAll(tmp)
		return nil, errno
	}
	defer release()
	if err := syscall.Rename(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		var st syscall.Stat_t
		if (err != syscall.ENOTEMPTY && err != syscall.EEXIST) || syscall.Lstat(dst, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return nil, errnoOf(err)
		}
		// The rw branch got the directory from outside since it was
		// looked up: the union takes it as the directory's copy.
	}
	restoreTimes(parentDir(dst), parentOrigin)
	ne, err := lstatEntry(u.rw, dst)
	if err != nil {
		return nil, errnoOf(err)
	}
	ne.layers = append([]*branch{u.rw}, e.layers...)
	u.numberCopy(dst, ne.st.key(), n.ino, rel)
	n.setEntry(ne)
	return origin, 0
}

// copyToTemp copies one object (not a directory's contents), rel of
// branch b, to a new temporary name in the work directory, with its
// metadata, and returns that name and the stat of the object it copied.
func (u *ufs) copyToTemp(b *branch, rel string, withData bool) (string, *syscall.Stat_t, syscall.Errno) {
	src, release, errno := b.confine(rel)
	if errno != 0 {
		return "", nil, errno
	}
	defer release()
	tmp, errno := u.tempName("cu")
	if errno != 0 {
		return "", nil, errno
	}
	st, err := copyObject(src, tmp, withData)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", nil, errnoOf(err)
	}
	return tmp, &st, 0
}

// copyObject creates dst as a copy of src (not a directory's contents),
// with its metadata, and returns the stat of src it copied. src is
// looked at afresh, not through a stat taken at lookup: a lower file
// changed from outside since would otherwise be copied at its old size.
func copyObject(src, dst string, withData bool) (syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(src, &st); err != nil {
		return st, err
	}
	tmp := dst
	var err error
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		err = copyFileData(src, tmp, &st, withData)
	case syscall.S_IFDIR:
		err = syscall.Mkdir(tmp, 0700)
	case syscall.S_IFLNK:
		var target string
		if target, err = os.Readlink(src); err == nil {
			err = syscall.Symlink(target, tmp)
		}
	default:
		err = syscall.Mknod(tmp, st.Mode, int(st.Rdev))
	}
	if err == nil {
		err = copyMeta(src, tmp, &st)
	}
	return st, err
}

// copyFileData writes src's contents to a new file dst: a reflink where
// the filesystem has one, else copy_file_range over the data extents
// (holes stay holes), else read/write.
func copyFileData(src, dst string, st *syscall.Stat_t, withData bool) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0600)
	if err != nil {
		return err
	}
	defer out.Close()
	if !withData || st.Size == 0 {
		return nil
	}
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return nil
	}
	if err := copyExtents(in, out, st.Size); err != nil {
		return err
	}
	return out.Truncate(st.Size)
}

// copyExtents copies the data extents of in to the same offsets of out.
func copyExtents(in, out *os.File, size int64) error {
	ifd, ofd := int(in.Fd()), int(out.Fd())
	off := int64(0)
	for off < size {
		data, err := unix.Seek(ifd, off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				return nil // only a hole is left
			}
			data = off // SEEK_DATA unsupported: copy everything
		}
		hole, err := unix.Seek(ifd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if hole > size {
			hole = size
		}
		if err := copyRange(ifd, ofd, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

func copyRange(ifd, ofd int, off, n int64) error {
	for n > 0 {
		ioff, ooff := off, off
		c, err := unix.CopyFileRange(ifd, &ioff, ofd, &ooff, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return copyRangeRW(ifd, ofd, off, n)
			}
			return err
		}
		if c == 0 {
			return io.ErrUnexpectedEOF
		}
		off += int64(c)
		n -= int64(c)
	}
	return nil
}

func copyRangeRW(ifd, ofd int, off, n int64) error {
	buf := make([]byte, 1<<20)
	for n > 0 {
		c, err := unix.Pread(ifd, buf[:min(n, int64(len(buf)))], off)
		if err != nil {
			return err
		}
		if c == 0 {
			return io.ErrUnexpectedEOF
		}
		if _, err := unix.Pwrite(ofd, buf[:c], off); err != nil {
			return err
		}
		off += int64(c)
		n -= int64(c)
	}
	return nil
}

// copyMeta gives dst the xattrs, owner, mode and times of src.
func copyMeta(src, dst string, st *syscall.Stat_t) error {
	// The owner first: a chown drops file capabilities
	// (security.capability) and set-user-ID bits, so the attributes and
	// the mode come after it.
	if err := syscall.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		if err := syscall.Chmod(dst, st.Mode&07777); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{unix.Timespec(st.Atim), unix.Timespec(st.Mtim)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func copyXattrs(src, dst string) error {
	list, errno := listXattrNames(src)
	if errno == syscall.ENOTSUP {
		return nil
	} else if errno != 0 {
		return errno
	}
	for _, name := range strings.Split(string(list), "\x00") {
		if name == "" || ownXattr(name) {
			continue // (a copy of this union gets its own)
		}
		vsz, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			continue
		}
		val := make([]byte, vsz)
		vsz, err = unix.Lgetxattr(src, name, val)
		if err != nil {
			continue
		}
		if err := unix.Lsetxattr(dst, name, val[:vsz], 0); err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOTSUP) {
			return err
		}
	}
	return nil
}

// cleanWorkDir removes the rw branch's work directory with what an
// interrupted copy-up left behind in it; it is created again when first
// needed (ufs.ensureWorkDir).
func cleanWorkDir(dir string) error {
	return os.RemoveAll(dir)
}
