package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// The probe mounts overlays of its own in a scratch directory; everything
// else returns mounts as data for graph.MountAll.

// mountOverlay mounts an overlay at target with the legacy mount(2) call
// and the mount data string data.
func mountOverlay(target, data string) error {
	if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount overlay %s (%s): %w", target, data, err)
	}
	return nil
}

// mountOverlayFsopen mounts an overlay at target through the new mount API:
// one fsconfig call per option, so options may repeat ("lowerdir+").
// The kernel's own error message, when it left one, is added to the error.
func mountOverlayFsopen(target string, options []string) (err error) {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	defer func() {
		if err != nil {
			if msg := kernelMessage(fd); msg != "" {
				err = fmt.Errorf("%w (kernel: %s)", err, msg)
			}
		}
	}()
	for _, o := range options {
		k, v, hasValue := strings.Cut(o, "=")
		if hasValue {
			err = unix.FsconfigSetString(fd, k, v)
		} else {
			err = unix.FsconfigSetFlag(fd, k)
		}
		if err != nil {
			return fmt.Errorf("fsconfig overlay %q: %w", o, err)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("fsconfig create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount overlay to %s: %w", target, err)
	}
	return nil
}

// kernelMessage reads the messages the kernel left on an fs context fd.
func kernelMessage(fd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msg := string(bytes.TrimSpace(buf[:n]))
		if len(msg) > 2 && msg[1] == ' ' { // "e ", "w ", "i ": the message level
			msg = msg[2:]
		}
		msgs = append(msgs, msg)
	}
	return strings.Join(msgs, "; ")
}

// unmount unmounts target, lazily when it is busy.
func unmount(target string) error {
	err := unix.Unmount(target, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(target, unix.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}
