package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

var _ fs.NodeStatxer = (*node)(nil)

// Statx is Getattr with what statx(2) adds, the birth time among it: of
// the top-most copy, or of the open file. The kernel asks it only for
// what GETATTR cannot give; it must never answer ENOSYS, which would
// turn statx off for the whole mount.
func (n *node) Statx(ctx context.Context, f fs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	var stx unix.Statx_t
	sync := int(flags & (unix.AT_STATX_FORCE_SYNC | unix.AT_STATX_DONT_SYNC))
	want := int(mask | unix.STATX_BASIC_STATS | unix.STATX_BTIME)
	var top *branch
	if h, ok := f.(fileHandle); ok {
		fd, errno := h.base().current()
		if errno != 0 {
			return errno
		}
		if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|sync, want, &stx); err != nil {
			return errnoOf(err)
		}
	} else {
		e, p, release, errno := n.where()
		if errno == 0 {
			errno = errnoOf(unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW|sync, want, &stx))
			release()
		}
		if errno != 0 {
			var st syscall.Stat_t
			if !n.statOpenDir(&st) {
				return errno
			}
			statxOfStat(&st, &stx)
		} else {
			top = e.top
		}
	}
	n.u.links.fixNlinkStatx(&stx)
	out.Statx.FromStatx(&stx)
	out.SetTimeout(n.u.attrTimeout(top, uint32(stx.Mode)))
	return 0
}

// statxOfStat fills stx with the basic stats of st.
func statxOfStat(st *syscall.Stat_t, stx *unix.Statx_t) {
	*stx = unix.Statx_t{
		Mask: unix.STATX_BASIC_STATS, Blksize: uint32(st.Blksize), Nlink: uint32(st.Nlink),
		Uid: st.Uid, Gid: st.Gid, Mode: uint16(st.Mode), Ino: st.Ino, Size: uint64(st.Size),
		Blocks:     uint64(st.Blocks),
		Atime:      unix.StatxTimestamp{Sec: st.Atim.Sec, Nsec: uint32(st.Atim.Nsec)},
		Ctime:      unix.StatxTimestamp{Sec: st.Ctim.Sec, Nsec: uint32(st.Ctim.Nsec)},
		Mtime:      unix.StatxTimestamp{Sec: st.Mtim.Sec, Nsec: uint32(st.Mtim.Nsec)},
		Rdev_major: unix.Major(st.Rdev), Rdev_minor: unix.Minor(st.Rdev),
		Dev_major: unix.Major(st.Dev), Dev_minor: unix.Minor(st.Dev),
	}
}
