package archive

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// ConvertWhiteouts rewrites, in place, the whiteouts and opaque markers of
// the layer directory dir from format from to format to: aufs ".wh.NAME"
// files become 0/0 character devices NAME and ".wh..wh..opq" files the
// opaque xattr, and back; between FormatOverlay and FormatOverlayUser the
// xattr namespace changes. aufs's own ".wh..wh.*" metadata is dropped when
// leaving FormatAUFS. FormatTree has no markers and cannot be converted.
func ConvertWhiteouts(dir string, from, to Format) error {
	if from == FormatTree || to == FormatTree || from < FormatTree || to < FormatTree || from > FormatOverlayUser || to > FormatOverlayUser {
		return fmt.Errorf("convert whiteouts %s: cannot convert from %s to %s", dir, from, to)
	}
	if from == to {
		return nil
	}
	t, err := openTree(dir)
	if err != nil {
		return fmt.Errorf("convert whiteouts %s: %w", dir, err)
	}
	defer t.close()
	fd, err := unix.Openat(t.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("convert whiteouts %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := convertDir(fd, "", from, to); err != nil {
		return fmt.Errorf("convert whiteouts %s: %w", dir, err)
	}
	return nil
}

func opaqueXattrOf(f Format) string {
	if f == FormatOverlayUser {
		return overlayOpaqueUser
	}
	return overlayOpaqueTrusted
}

// convertDir converts the directory open as fd (at rel) and below.
func convertDir(fd int, rel string, from, to Format) error {
	names, err := readDirNames(fd)
	if err != nil {
		return &pathErr{"read dir", rel, err}
	}
	var dst unix.Stat_t
	if err := unix.Fstat(fd, &dst); err != nil {
		return &pathErr{"stat", rel, err}
	}
	// Converting changes the directory; keep its times as they were.
	defer unix.UtimesNanoAt(fd, ".", []unix.Timespec{dst.Atim, dst.Mtim}, 0)
	// the opaque marker of this directory
	switch {
	case from == FormatAUFS:
		for _, n := range names {
			if n == WhiteoutOpaque {
				if err := unix.Unlinkat(fd, n, 0); err != nil {
					return &pathErr{"remove", joinRel(rel, n), err}
				}
				if err := unix.Fsetxattr(fd, opaqueXattrOf(to), []byte("y"), 0); err != nil {
					return &pathErr{"set " + opaqueXattrOf(to), rel, err}
				}
			}
		}
	default:
		v := make([]byte, 8)
		n, err := unix.Fgetxattr(fd, opaqueXattrOf(from), v)
		if err == nil && string(v[:n]) == "y" {
			if err := unix.Fremovexattr(fd, opaqueXattrOf(from)); err != nil {
				return &pathErr{"remove " + opaqueXattrOf(from), rel, err}
			}
			if to == FormatAUFS {
				wfd, err := unix.Openat(fd, WhiteoutOpaque, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err != nil {
					return &pathErr{"create", joinRel(rel, WhiteoutOpaque), err}
				}
				unix.Close(wfd)
			} else if err := unix.Fsetxattr(fd, opaqueXattrOf(to), []byte("y"), 0); err != nil {
				return &pathErr{"set " + opaqueXattrOf(to), rel, err}
			}
		}
	}
	for _, n := range names {
		child := joinRel(rel, n)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue // the opaque marker removed above
			}
			return &pathErr{"lstat", child, err}
		}
		switch {
		case from == FormatAUFS && strings.HasPrefix(n, WhiteoutMetaPrefix):
			if n != WhiteoutOpaque {
				if _, err := removeAt(fd, n); err != nil {
					return &pathErr{"remove", child, err}
				}
			}
			continue
		case from == FormatAUFS && strings.HasPrefix(n, WhiteoutPrefix):
			target := n[len(WhiteoutPrefix):]
			if _, err := removeAt(fd, target); err != nil {
				return &pathErr{"remove", joinRel(rel, target), err}
			}
			if err := unix.Unlinkat(fd, n, 0); err != nil {
				return &pathErr{"remove", child, err}
			}
			if err := unix.Mknodat(fd, target, unix.S_IFCHR, 0); err != nil {
				return &pathErr{"mknod", joinRel(rel, target), err}
			}
			continue
		case from != FormatAUFS && to == FormatAUFS && isWhiteoutDev(&st):
			if err := unix.Unlinkat(fd, n, 0); err != nil {
				return &pathErr{"remove", child, err}
			}
			wfd, err := unix.Openat(fd, WhiteoutPrefix+n, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return &pathErr{"create", joinRel(rel, WhiteoutPrefix+n), err}
			}
			unix.Close(wfd)
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &pathErr{"open", child, err}
		}
		err = convertDir(cfd, child, from, to)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}
