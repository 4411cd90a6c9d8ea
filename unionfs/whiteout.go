package unionfs

import (
	"os"
	"syscall"
)

// whiteoutPath is the aufs whiteout of name in directory rel of b.
func whiteoutPath(b *branch, rel, name string) string {
	return b.join(joinRel(rel, whPrefix+name))
}

// writeWhiteout hides name in directory rel (already in the rw branch)
// from the branches below.
func (u *ufs) writeWhiteout(rel, name string) syscall.Errno {
	// mknod makes the empty file in one call (open and close take two);
	// a whiteout already there is as good as a new one.
	err := syscall.Mknod(whiteoutPath(u.rw, rel, name), syscall.S_IFREG|0444, 0)
	if err != nil && err != syscall.EEXIST {
		return errnoOf(err)
	}
	return 0
}

// removeWhiteout drops a whiteout of name in directory rel of the rw
// branch, if there is one.
func (u *ufs) removeWhiteout(rel, name string) syscall.Errno {
	err := syscall.Unlink(whiteoutPath(u.rw, rel, name))
	if err != nil && err != syscall.ENOENT {
		return errnoOf(err)
	}
	return 0
}

// makeOpaque marks directory p as hiding everything below it.
func makeOpaque(p string) syscall.Errno {
	fd, err := syscall.Open(p+"/"+opqMarker, syscall.O_CREAT|syscall.O_WRONLY|syscall.O_CLOEXEC, 0444)
	if err != nil {
		return errnoOf(err)
	}
	return errnoOf(syscall.Close(fd))
}

// clearWhiteouts removes the .wh.* entries of rw directory p, which is
// empty in the union, so the directory itself can be removed or
// replaced. It fails with ENOTEMPTY if anything else is there.
func clearWhiteouts(p string) syscall.Errno {
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
