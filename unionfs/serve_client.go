package unionfs

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// MountThroughServer mounts spec at mountpoint, in this process's mount
// namespace, and hands the FUSE connection to the mount server listening
// on socket (see MountServer), which serves it from then on. It returns
// once the server serves the mount. The spec is validated here before
// anything is mounted: a bad spec is ErrBadSpec and mounts nothing. With
// no server on socket it returns an error wrapping ErrNoMountServer,
// having done nothing.
//
// The mount ends with a plain unmount (umount(8), unionctl umount,
// graph.UnmountAll); branch management (unionctl branch) is for mounts
// with a daemon of their own.
func MountThroughServer(socket string, spec MountSpec, mountpoint string) error {
	// Dial first: without a server the caller mounts another way, which
	// validates the spec itself.
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: socket, Net: "unixpacket"})
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return fmt.Errorf("mount %s: %w at %s", mountpoint, ErrNoMountServer, socket)
		}
		return fmt.Errorf("mount %s: dial mount server %s: %w", mountpoint, socket, err)
	}
	defer conn.Close()
	mp, branches, err := daemonPrepare(spec, mountpoint)
	if err != nil {
		return err
	}
	spec.Branches = branches
	if err := serveClientMount(conn, spec, mp); err != nil {
		return fmt.Errorf("mount %s through %s: %w", mountpoint, socket, err)
	}
	if serveIsSelf(conn) {
		servePollHack(mp)
	}
	tuneReadAhead(mp)
	return nil
}

// goFusePollHackName is the file go-fuse answers for itself in the root
// of every mount, so that a process can make the kernel send one POLL,
// which go-fuse answers ENOSYS: the kernel then never sends POLL again.
const goFusePollHackName = ".go-fuse-epoll-hack"

// servePollHack makes the kernel learn that the mount at mp does not
// poll. Needed when this very process serves the mount: the Go runtime
// registers every opened file with epoll while holding a scheduler slot,
// and a POLL it waits for then cannot be served if the garbage collector
// stops the world meanwhile (go-fuse does the same for its own mounts).
// poll(2) is a real system call, which releases the slot while it
// blocks; epoll_ctl is a raw one here, which would not.
func servePollHack(mp string) {
	fd, err := unix.Open(mp+"/"+goFusePollHackName, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLPRI | unix.POLLOUT}}, 0)
}

// serveIsSelf says whether the server at the other end of conn is this
// process.
func serveIsSelf(conn *net.UnixConn) bool {
	raw, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return cred != nil && int(cred.Pid) == os.Getpid()
}

// serveClientMount runs the client side of the protocol (serve_wire.go):
// it mounts a new FUSE connection at mp with the arguments the server's
// own options give (fuseOptions), hands it over with the spec and waits
// for the server to serve it; on failure the mount is detached again.
func serveClientMount(conn *net.UnixConn, spec MountSpec, mp string) error {
	source, fstype, flags, data := kernelMountArgs(fuseOptions(withDefaults(spec.Options)).MountOptions)
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/fuse: %w", err)
	}
	defer unix.Close(fd)
	flags |= specMountFlags(spec) // set at mount time, no remount
	if err := unix.Mount(source, mp, fstype, flags, fmt.Sprintf("fd=%d,%s", fd, data)); err != nil {
		return fmt.Errorf("mount(2) %s type %s: %w", mp, fstype, err)
	}
	fail := func(err error) error {
		// Nobody serves the connection: take the mount away again.
		_ = unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		return err
	}
	if err := serveSend(conn, serveMessage{Op: "mount", Spec: &spec, Mountpoint: mp}, fd); err != nil {
		return fail(fmt.Errorf("hand over the FUSE connection: %w", err))
	}
	var done serveMessage
	fds, err := serveRecv(conn, &done)
	serveCloseAll(fds)
	if err != nil {
		return fail(fmt.Errorf("read the server's answer: %w", err))
	}
	if err := done.err(); err != nil {
		return fail(err)
	}
	return nil
}

// MountServerAlive says whether a mount server answers on socket.
func MountServerAlive(socket string) bool {
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: socket, Net: "unixpacket"})
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
