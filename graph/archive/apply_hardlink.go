package archive

import (
	"archive/tar"
	"fmt"

	"golang.org/x/sys/unix"
)

// hardlink links rel to the entry hdr.Linkname names, which must be inside
// the root, or for overlay and aufs layers in one of opts.Parents (it is
// copied up first).
func (a *applier) hardlink(hdr *tar.Header, pfd int, rel, base string) error {
	trel, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	if trel == "" || trel == rel {
		return fmt.Errorf("%w: hard link to %q", errBadHeader, hdr.Linkname)
	}
	tdir, tbase := splitName(trel)
	tfd, err := a.walk(tdir, false)
	if err != nil {
		if a.opts.Format == FormatTree {
			return fmt.Errorf("hard link target %q: %w", trel, err)
		}
		tfd = -1
	}
	var st unix.Stat_t
	found := false
	if tfd >= 0 {
		err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW)
		found = err == nil && !(a.overlay() && isWhiteoutDev(&st))
	}
	if !found && a.opts.Format != FormatTree {
		if tfd >= 0 {
			unix.Close(tfd)
		}
		if tfd, err = a.copyUp(trel); err != nil {
			return fmt.Errorf("hard link target %q: %w", trel, err)
		}
		found = unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	}
	defer unix.Close(tfd)
	if !found {
		return fmt.Errorf("%q: %w", trel, errLinkNotFound)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%w: hard link to directory %q", errBadHeader, trel)
	}
	// pfd may be the cached fd, which replace can drop: hold our own.
	own, err := unix.Dup(pfd)
	if err != nil {
		return err
	}
	defer unix.Close(own)
	if _, err := a.replace(own, rel, base, false); err != nil {
		return err
	}
	if err := unix.Linkat(tfd, tbase, own, base, 0); err != nil {
		return &pathErr{"link to " + trel, rel, err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		a.planted[rel] = struct{}{} // a new name for a symlink is planted too
	}
	return a.record(rel, false)
}

// copyUp copies the file trel from the nearest parent layer that has it
// into the root (parents of it created as needed) and returns an fd of its
// directory in the root.
func (a *applier) copyUp(trel string) (int, error) {
	p, err := a.findInParents(trel)
	if err != nil {
		return -1, err
	}
	tdir, tbase := splitName(trel)
	src, err := p.beneath(trel, unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		// a symlink or special file: copy it by kind below
		src = -1
	}
	var st unix.Stat_t
	if err := unix.Fstatat(p.fd, trel, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if src >= 0 {
			unix.Close(src)
		}
		return -1, &pathErr{"lstat in parent", trel, err}
	}
	dfd, err := a.walk(tdir, true)
	if err != nil {
		if src >= 0 {
			unix.Close(src)
		}
		return -1, err
	}
	err = copyEntry(src, &st, p, trel, dfd, tbase)
	if src >= 0 {
		unix.Close(src)
	}
	if err != nil {
		unix.Close(dfd)
		return -1, err
	}
	a.mark(trel)
	return dfd, nil
}

// findInParents returns the nearest parent layer in which trel exists and
// is not hidden by a whiteout or an opaque directory of a nearer layer.
func (a *applier) findInParents(trel string) (*tree, error) {
	comps := splitAll(trel)
	for _, p := range a.parents {
		var st unix.Stat_t
		if err := unix.Fstatat(p.fd, trel, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			if a.overlay() && isWhiteoutDev(&st) {
				return nil, errLinkNotFound
			}
			return p, nil
		}
		if a.hiddenBelow(p, comps) {
			break
		}
	}
	return nil, errLinkNotFound
}

// hiddenBelow reports whether layer p hides the path comps from the layers
// under it: a whiteout of the path or an ancestor, or an opaque ancestor.
func (a *applier) hiddenBelow(p *tree, comps []string) bool {
	prefix := ""
	for i, c := range comps {
		dir := prefix
		if prefix != "" {
			prefix += "/"
		}
		prefix += c
		var st unix.Stat_t
		if a.opts.Format == FormatAUFS {
			wh := WhiteoutPrefix + c
			if dir != "" {
				wh = dir + "/" + wh
			}
			if unix.Fstatat(p.fd, wh, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				return true
			}
			if i < len(comps)-1 && unix.Fstatat(p.fd, prefix+"/"+WhiteoutOpaque, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				return true
			}
			continue
		}
		if unix.Fstatat(p.fd, prefix, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			return false
		}
		if isWhiteoutDev(&st) {
			return true
		}
		if i < len(comps)-1 && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if v, err := getXattr(procPath(p.fd, prefix), a.opaqueXattr()); err == nil && string(v) == "y" {
				return true
			}
		}
	}
	return false
}

func splitAll(rel string) []string {
	var out []string
	for rel != "" {
		dir, base := splitName(rel)
		out = append([]string{base}, out...)
		rel = dir
	}
	return out
}

// copyEntry copies the non-directory trel of tree p (src: its content
// fd, or -1) to base in dfd with its owner, mode, xattrs and times.
func copyEntry(src int, st *unix.Stat_t, p *tree, trel string, dfd int, base string) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if src < 0 {
			return &pathErr{"open in parent", trel, unix.EINVAL}
		}
		fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return &pathErr{"create", trel, err}
		}
		// Raw fds throughout: an *os.File here would close src again
		// from its finalizer.
		err = copyFd(fd, src, st.Size)
		if err == nil {
			err = unix.Fchown(fd, int(st.Uid), int(st.Gid))
		}
		if err == nil {
			err = unix.Fchmod(fd, st.Mode&0o7777)
		}
		unix.Close(fd)
		if err != nil {
			return &pathErr{"copy up", trel, err}
		}
	case unix.S_IFLNK:
		target, err := readlinkAt(p.fd, trel)
		if err != nil {
			return &pathErr{"readlink in parent", trel, err}
		}
		if err := unix.Symlinkat(target, dfd, base); err != nil {
			return &pathErr{"copy up", trel, err}
		}
		if err := unix.Fchownat(dfd, base, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &pathErr{"copy up", trel, err}
		}
	default:
		if err := unix.Mknodat(dfd, base, st.Mode, int(st.Rdev)); err != nil {
			return &pathErr{"copy up", trel, err}
		}
		if err := unix.Fchownat(dfd, base, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &pathErr{"copy up", trel, err}
		}
		if err := unix.Fchmodat(dfd, base, st.Mode&0o7777, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &pathErr{"copy up", trel, err}
		}
	}
	xs, err := listXattrs(procPath(p.fd, trel))
	if err != nil {
		return &pathErr{"list xattrs in parent", trel, err}
	}
	for k, v := range xs {
		if err := unix.Lsetxattr(procPath(dfd, base), k, v, 0); err != nil {
			return &pathErr{"copy up xattr " + k, trel, err}
		}
	}
	return unix.UtimesNanoAt(dfd, base, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// copyFd copies size bytes from src to dst, both raw fds at offset 0.
func copyFd(dst, src int, size int64) error {
	buf := make([]byte, 1<<16)
	var off int64
	for off < size {
		n, err := unix.Pread(src, buf[:min(int64(len(buf)), size-off)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("file shrank while being copied")
		}
		if err := writeAll(dst, buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}
