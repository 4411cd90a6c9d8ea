package unionfs

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// A union that holds a descriptor of its own FUSE connection can send the
// kernel notifications go-fuse 2.12 has no call for. It gets one when it
// mounts /dev/fuse itself (mountOwn, as root) or is handed the mounted
// descriptor (MountServer): go-fuse then serves "/dev/fd/N" and the
// union keeps a duplicate of N, so a write of its own never lands on a
// number go-fuse closed and the system reused.

// mountOwn opens /dev/fuse and mounts it on mountpoint with the go-fuse
// options mo, as go-fuse's own direct mount does (kernelMountArgs), and
// returns the descriptor for go-fuse to serve as "/dev/fd/N".
func mountOwn(mountpoint string, mo fuse.MountOptions) (int, error) {
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/fuse: %w", err)
	}
	source, fstype, flags, data := kernelMountArgs(mo)
	if err := unix.Mount(source, mountpoint, fstype, flags, fmt.Sprintf("fd=%d,%s", fd, data)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mount(2) %s: %w", fstype, err)
	}
	return fd, nil
}

// canMountOwn says whether this process mounts /dev/fuse itself: as
// root. Others leave the mount to go-fuse (fusermount).
func canMountOwn() bool { return os.Geteuid() == 0 }

// unmountOwn unmounts a mount made by mountOwn, trying again while the
// kernel still counts a file of it as open (EBUSY), as go-fuse does.
func unmountOwn(mountpoint string) error {
	delay := 5 * time.Millisecond
	var err error
	for range 5 {
		if err = unix.Unmount(mountpoint, 0); err != unix.EBUSY {
			break
		}
		time.Sleep(delay)
		delay *= 2
	}
	return err
}

// keepConnFd records a duplicate of fd, the union's /dev/fuse
// descriptor, for notifications (none when it cannot be duplicated).
func (u *ufs) keepConnFd(fd int) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return
	}
	u.connMu.Lock()
	u.connFd = dup
	u.connMu.Unlock()
}

// closeConnFd closes the duplicate kept by keepConnFd.
func (u *ufs) closeConnFd() {
	u.connMu.Lock()
	defer u.connMu.Unlock()
	if u.connFd >= 0 {
		unix.Close(u.connFd)
		u.connFd = -1
	}
}

// fuseNotifyIncEpoch is FUSE_NOTIFY_INC_EPOCH (protocol 7.44).
const fuseNotifyIncEpoch = 8

// notifyIncEpoch makes every name the kernel caches for the union stale
// (FUSE_NOTIFY_INC_EPOCH, Linux 6.16+): each is looked up again at its
// next use, also one whose lookup was answered from the stack before a
// change but reached the kernel after it, which no invalidation of known
// names can catch. Without a descriptor or on an older kernel it does
// nothing (the write fails; the entry timeout then bounds such a name).
func (u *ufs) notifyIncEpoch() {
	u.connMu.Lock()
	defer u.connMu.Unlock()
	if u.connFd < 0 {
		return
	}
	// fuse_out_header: len, error (the notification's code), unique 0.
	var h [16]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(h)))
	binary.LittleEndian.PutUint32(h[4:], fuseNotifyIncEpoch)
	_, _ = unix.Write(u.connFd, h[:])
}

// devFdNumber returns N of a "/dev/fd/N" mountpoint, go-fuse's form for
// a /dev/fuse descriptor mounted already.
func devFdNumber(dir string) (int, bool) {
	rest, ok := strings.CutPrefix(dir, "/dev/fd/")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0
}
