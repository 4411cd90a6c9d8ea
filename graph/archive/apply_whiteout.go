package archive

import (
	"archive/tar"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// whiteout handles an entry whose base name starts with ".wh.". It
// reports done=false when the entry is to be written as an ordinary file
// (FormatAUFS keeps whiteouts as they are).
func (a *applier) whiteout(hdr *tar.Header, rel, dir, base string) (bool, error) {
	if base != WhiteoutOpaque && strings.HasPrefix(base, WhiteoutMetaPrefix) {
		return true, a.record(rel, false) // aufs's own metadata, never content
	}
	if a.opts.Format == FormatAUFS {
		if hdr.Typeflag != tar.TypeReg {
			return true, fmt.Errorf("%w: whiteout is not a regular file", errBadHeader)
		}
		return false, nil
	}
	if base == WhiteoutOpaque {
		return true, a.opaque(hdr, dir)
	}
	name := base[len(WhiteoutPrefix):]
	if name == "" || name == "." {
		return true, fmt.Errorf("%w: whiteout names nothing", errUnsafeName)
	}
	target := name
	if dir != "" {
		target = dir + "/" + name
	}
	if _, ok := a.layer[target]; ok {
		// A whiteout hides lower layers only, never an entry of its own layer.
		return true, a.record(rel, false)
	}
	if a.opts.Format == FormatTree {
		// The parent is created if missing, as for any other entry.
		pfd, err := a.parent(dir, true)
		if err != nil {
			return true, err
		}
		delete(a.planted, target)
		a.stale = true
		if _, err := removeAt(pfd, name); err != nil {
			return true, &pathErr{"remove", target, err}
		}
		return true, a.record(rel, false)
	}
	// overlay: a 0/0 character device
	pfd, err := a.parent(dir, true)
	if err != nil {
		return true, err
	}
	if _, err := a.replace(pfd, target, name, false); err != nil {
		return true, err
	}
	if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
		return true, &pathErr{"mknod whiteout", target, err}
	}
	if err := unix.Fchownat(pfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return true, &pathErr{"chown", target, err}
	}
	if err := setTimes(pfd, name, hdr); err != nil {
		return true, &pathErr{"set times", target, err}
	}
	a.mark(target)
	return true, a.record(rel, false)
}

// opaque makes directory dir hide what lower layers have below it.
func (a *applier) opaque(hdr *tar.Header, dir string) error {
	if a.opts.Format == FormatTree {
		fd, err := a.parent(dir, true)
		if err != nil {
			return err
		}
		// The parent fd is the cached O_PATH one; emptying may drop the
		// cache, so list it through a private readable fd.
		dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return &pathErr{"open", dir, err}
		}
		defer unix.Close(dup)
		a.stale = true
		if err := a.emptyLower(dup, dir); err != nil {
			return err
		}
		return a.record(joinRel(dir, WhiteoutOpaque), false)
	}
	pdir, base := splitName(dir)
	if dir == "" {
		return fmt.Errorf("%w: the root cannot be opaque in an overlay layer", errBadHeader)
	}
	pfd, err := a.parent(pdir, true)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		if err := unix.Mkdirat(pfd, base, 0o755); err != nil {
			return &pathErr{"mkdir", dir, err}
		}
		a.mark(dir)
		fd, err = unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return &pathErr{"open", dir, err}
	}
	defer unix.Close(fd)
	if err := unix.Fsetxattr(fd, a.opaqueXattr(), []byte("y"), 0); err != nil {
		return &pathErr{"set " + a.opaqueXattr(), dir, err}
	}
	return a.record(joinRel(dir, WhiteoutOpaque), false)
}

// emptyLower removes, below the directory open as fd (at rel), everything
// this layer has no entry for.
func (a *applier) emptyLower(fd int, rel string) error {
	names, err := readDirNames(fd)
	if err != nil {
		return &pathErr{"read dir", rel, err}
	}
	for _, n := range names {
		child := n
		if rel != "" {
			child = rel + "/" + n
		}
		_, own := a.layer[child]
		_, holds := a.above[child]
		if !own && !holds {
			delete(a.planted, child)
			if _, err := removeAt(fd, n); err != nil {
				return &pathErr{"remove", child, err}
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &pathErr{"lstat", child, err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &pathErr{"open", child, err}
		}
		err = a.emptyLower(cfd, child)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}
