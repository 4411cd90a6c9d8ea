package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

var _ fs.NodeCopyFileRanger = (*node)(nil)

// CopyFileRange serves copy_file_range(2) between two open files of the
// union with the same call on their backing files: the branches' file
// system copies the data itself (sharing extents where it can reflink)
// instead of the kernel reading it through the mount and writing it
// back. The source may be a lower file (its handle follows a copy-up);
// the destination must be a writable handle, so of the rw branch. EXDEV
// (backing files on different file systems) makes the kernel fall back
// to copying through the mount.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	in, ok := fhIn.(fileHandle)
	if !ok {
		return 0, syscall.EBADF
	}
	dst, ok := fhOut.(fileHandle)
	if !ok || !dst.base().writable() {
		return 0, syscall.EBADF
	}
	if flags != 0 {
		return 0, syscall.EINVAL
	}
	ifd, errno := in.base().current()
	if errno != 0 {
		return 0, errno
	}
	ioff, ooff := int64(offIn), int64(offOut)
	c, err := unix.CopyFileRange(ifd, &ioff, dst.base().fd, &ooff, int(min(length, 1<<30)), 0)
	if err != nil {
		return 0, errnoOf(err)
	}
	return uint32(c), 0
}
