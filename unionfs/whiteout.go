package unionfs

import (
	"os"
	"syscall"
)

// writeWhiteout hides name in directory rel (already in the rw branch)
// from the branches below. As aufs does, a whiteout is a hard link of
// one empty base file: a link costs a directory entry, where a new file
// costs an inode too (on ext4 here 15 us against 100-600 us). Where
// links fail the whiteout is a new empty file. A whiteout already there
// is as good as a new one.
func (u *ufs) writeWhiteout(rel, name string) syscall.Errno {
	p, release, errno := u.rw.confine(joinRel(rel, whPrefix+name))
	if errno != 0 {
		return errno
	}
	defer release()
	return u.whiteoutAt(p)
}

// whiteoutAt makes a whiteout at p: a link of the base file, else (no
// base, or one that cannot take a link) a new empty file.
func (u *ufs) whiteoutAt(p string) syscall.Errno {
	for range 2 {
		base, err := u.whiteoutBase()
		if err != nil {
			return u.whiteoutFile(p)
		}
		err = syscall.Link(base, p)
		if err == nil || err == syscall.EEXIST {
			return 0
		}
		switch err {
		case syscall.EMLINK: // the base has as many links as it can take
			u.renewWhiteoutBase(base)
		case syscall.ENOENT: // the base was removed from outside
			u.workMu.Lock()
			u.whBaseReady = false
			u.workMu.Unlock()
		default:
			return u.whiteoutFile(p)
		}
	}
	return u.whiteoutFile(p)
}

// pendingWhiteout is a whiteout made in the work directory before a
// rename that must end with one (its source is a name a lower branch
// shows), to be moved into place once the source is at its new name. A
// whiteout takes an inode (or a link, which some file systems count as
// one); moving it into place takes neither. So a full rw branch fails
// the rename before it starts, rather than after the source moved,
// when the old name would still show the lower file.
type pendingWhiteout struct {
	u   *ufs
	tmp string // "" once placed or discarded
}

// prepareWhiteout makes a pending whiteout.
func (u *ufs) prepareWhiteout() (*pendingWhiteout, syscall.Errno) {
	tmp, errno := u.tempName("wh")
	if errno != 0 {
		return nil, errno
	}
	if errno := u.whiteoutAt(tmp); errno != 0 {
		return nil, errno
	}
	return &pendingWhiteout{u: u, tmp: tmp}, 0
}

// place moves the whiteout to name in directory rel of the rw branch.
func (w *pendingWhiteout) place(rel, name string) syscall.Errno {
	p, release, errno := w.u.rw.confine(joinRel(rel, whPrefix+name))
	if errno != 0 {
		return errno
	}
	defer release()
	if err := syscall.Rename(w.tmp, p); err != nil {
		return errnoOf(err)
	}
	w.tmp = ""
	return 0
}

// placed reports whether place succeeded.
func (w *pendingWhiteout) placed() bool { return w.tmp == "" }

// discard removes the whiteout unless it was placed; nil does nothing.
func (w *pendingWhiteout) discard() {
	if w != nil && w.tmp != "" {
		_ = syscall.Unlink(w.tmp)
		w.tmp = ""
	}
}

// whiteoutFile makes whiteout p a new empty file.
func (u *ufs) whiteoutFile(p string) syscall.Errno {
	// mknod makes the empty file in one call (open and close take two).
	err := syscall.Mknod(p, syscall.S_IFREG|0444, 0)
	if err != nil && err != syscall.EEXIST {
		return errnoOf(err)
	}
	return 0
}

// whiteoutBaseName is the base file of whiteouts in the work directory.
const whiteoutBaseName = "whiteout"

// whiteoutBase returns the path of the file whiteouts are links of,
// making it when it is missing (the work directory is emptied at mount).
func (u *ufs) whiteoutBase() (string, error) {
	if errno := u.ensureWorkDir(); errno != 0 {
		return "", errno
	}
	p := u.workPath(whiteoutBaseName)
	u.workMu.Lock()
	defer u.workMu.Unlock()
	if u.whBaseReady {
		return p, nil
	}
	if err := syscall.Mknod(p, syscall.S_IFREG|0444, 0); err != nil && err != syscall.EEXIST {
		return "", err
	}
	u.whBaseReady = true
	return p, nil
}

// renewWhiteoutBase replaces base, which cannot take another link, with
// a new empty file; the whiteouts linked to the old one keep it.
func (u *ufs) renewWhiteoutBase(base string) {
	u.workMu.Lock()
	defer u.workMu.Unlock()
	tmp := base + ".new"
	if err := syscall.Mknod(tmp, syscall.S_IFREG|0444, 0); err != nil && err != syscall.EEXIST {
		return
	}
	_ = syscall.Rename(tmp, base)
}

// removeWhiteout drops a whiteout of name in directory rel of the rw
// branch, if there is one.
func (u *ufs) removeWhiteout(rel, name string) syscall.Errno {
	p, release, errno := u.rw.confine(joinRel(rel, whPrefix+name))
	if errno != 0 {
		return errno
	}
	defer release()
	err := syscall.Unlink(p)
	if err != nil && err != syscall.ENOENT {
		return errnoOf(err)
	}
	return 0
}

// makeOpaque marks directory p as hiding everything below it.
func makeOpaque(p string) syscall.Errno {
	fd, err := syscall.Open(p+"/"+opqMarker, syscall.O_CREAT|syscall.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0444)
	if err != nil {
		return errnoOf(err)
	}
	return errnoOf(syscall.Close(fd))
}

// ensureOpaque makes directory rel of b opaque, unless it is.
func (b *branch) ensureOpaque(rel string) syscall.Errno {
	p, release, errno := b.confineDir(rel)
	if errno != 0 {
		return errno
	}
	defer release()
	if exists(p + "/" + opqMarker) {
		return 0
	}
	return makeOpaque(p)
}

// clearWhiteouts is clearWhiteoutsIn for directory rel of b.
func (b *branch) clearWhiteouts(rel string) syscall.Errno {
	p, release, errno := b.confineDir(rel)
	if errno != 0 {
		return errno
	}
	defer release()
	return clearWhiteoutsIn(p)
}

// onlyWhiteouts fails with ENOTEMPTY unless directory rel of b holds
// nothing but .wh.* entries.
func (b *branch) onlyWhiteouts(rel string) syscall.Errno {
	ents, err := b.readDir(rel)
	if err != nil {
		return errnoOf(err)
	}
	for _, e := range ents {
		if !isWhiteoutName(e.name) {
			return syscall.ENOTEMPTY
		}
	}
	return 0
}

// clearWhiteoutsIn removes the .wh.* entries of rw directory p (a
// confined path, see confineDir), which is empty in the union, so the
// directory itself can be removed or replaced. It fails with ENOTEMPTY
// if anything else is there.
func clearWhiteoutsIn(p string) syscall.Errno {
	ents, err := os.ReadDir(p)
	if err != nil {
		return errnoOf(err)
	}
	for _, e := range ents {
		if !isWhiteoutName(e.Name()) {
			return syscall.ENOTEMPTY
		}
	}
	for _, e := range ents {
		if err := os.RemoveAll(p + "/" + e.Name()); err != nil {
			return errnoOf(err)
		}
	}
	return 0
}
