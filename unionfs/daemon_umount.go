package unionfs

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// umountDaemonExitWait bounds how long Umount waits for the daemon to go.
const umountDaemonExitWait = 30 * time.Second

// Umount ends the union mounted at mountpoint: it flushes it (syncfs),
// asks its daemon to unmount, and waits for the daemon to exit. A mount
// whose daemon is gone ("transport endpoint is not connected") is
// detached lazily, and stale state is removed. A path that is no unionctl
// mount is ErrNotUnionMount; a busy mount stays mounted, with an error.
func Umount(mountpoint string) error {
	mp, err := daemonCanonicalMountpoint(mountpoint)
	if err != nil {
		return fmt.Errorf("umount %s: %w", mountpoint, err)
	}
	st := daemonStateFor(mp)
	entry, mounted, err := daemonFindMount(mp)
	if err != nil {
		return fmt.Errorf("umount %s: %w", mountpoint, err)
	}
	hasState := st.exists()
	pid := st.livePid()
	if !mounted {
		if !hasState {
			return fmt.Errorf("umount %s: %w (nothing is mounted there)", mountpoint, ErrNotUnionMount)
		}
		// The daemon may serve the mount in another mount namespace
		// (SIGTERM unmounts it there), or be exiting after losing it.
		if pid != 0 {
			if _, theirs, _ := daemonFindMountIn(pid, mp); theirs {
				_ = unix.Kill(pid, unix.SIGTERM)
			}
			if !umountWaitExit(pid) {
				return fmt.Errorf("umount %s: daemon pid %d does not exit", mountpoint, pid)
			}
		}
		return st.remove()
	}
	if !hasState && !daemonUnionFSTypes[entry.FSType] {
		return fmt.Errorf("umount %s: %w (it is a %s mount)", mountpoint, ErrNotUnionMount, entry.FSType)
	}
	serr := umountSyncfs(mp)
	if serr == unix.ENOTCONN || serr == unix.ECONNABORTED { // its daemon is dead
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("umount %s: lazy unmount of a dead mount: %w", mountpoint, err)
		}
		if pid != 0 {
			umountWaitExit(pid)
		}
		return st.remove()
	}
	if pid == 0 {
		// Served, but by no daemon of ours (a program using Mount): a
		// plain unmount ends its serving.
		if err := unix.Unmount(mp, 0); err != nil {
			return fmt.Errorf("umount %s: %w", mountpoint, err)
		}
		return st.remove()
	}
	if _, err := controlDial(st.socketPath(), controlRequest{Op: "unmount"}); err != nil {
		if !isControlUnavailable(err) {
			return fmt.Errorf("umount %s: %w", mountpoint, err)
		}
		if _, still, _ := daemonFindMount(mp); !still {
			// The daemon unmounted and exited before it answered.
			umountWaitExit(pid)
			return st.remove()
		}
		// The daemon does not answer: unmount it ourselves; its Wait
		// returns and it exits. EINVAL: it unmounted meanwhile.
		if uerr := unix.Unmount(mp, 0); uerr != nil && !errors.Is(uerr, unix.EINVAL) {
			return fmt.Errorf("umount %s: %v; unmount: %w", mountpoint, err, uerr)
		}
	}
	if !umountWaitExit(pid) {
		return fmt.Errorf("umount %s: unmounted, but daemon pid %d did not exit", mountpoint, pid)
	}
	return st.remove()
}

// umountSyncfs flushes the file system mounted at mp; it returns the
// errno of a failure (ENOTCONN, or ECONNABORTED once the connection was
// aborted, for a dead FUSE mount).
func umountSyncfs(mp string) error {
	fd, err := unix.Open(mp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// umountWaitExit waits for process pid to exit and says whether it did.
func umountWaitExit(pid int) bool {
	deadline := time.Now().Add(umountDaemonExitWait)
	for daemonProcessAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// IsMounted says whether a unionctl mount (with or without a live daemon)
// is at mountpoint.
func IsMounted(mountpoint string) bool {
	mp, err := daemonCanonicalMountpoint(mountpoint)
	if err != nil {
		return false
	}
	entry, mounted, err := daemonFindMount(mp)
	if err != nil || !mounted {
		return false
	}
	return daemonUnionFSTypes[entry.FSType] || daemonStateFor(mp).exists()
}

// DaemonPid returns the pid of the daemon serving mountpoint, or 0.
func DaemonPid(mountpoint string) int {
	mp, err := daemonCanonicalMountpoint(mountpoint)
	if err != nil {
		return 0
	}
	return daemonStateFor(mp).livePid()
}

// StateDir is the directory where the daemon serving mountpoint records
// its pid, control socket and log (it need not exist).
func StateDir(mountpoint string) string {
	mp, err := daemonCanonicalMountpoint(mountpoint)
	if err != nil {
		mp = mountpoint
	}
	return daemonStateFor(mp).dir
}
