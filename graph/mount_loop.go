package graph

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// attachLoop attaches image to a free loop device with autoclear set, so
// that the device detaches itself once the returned file is closed and the
// filesystem on it is unmounted.
func attachLoop(image string, readOnly bool) (*os.File, error) {
	mode := os.O_RDWR
	if readOnly {
		mode = os.O_RDONLY
	}
	backing, err := os.OpenFile(image, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open image for loop device: %w", err)
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop devices: %w", err)
	}
	defer ctl.Close()

	var lastErr error
	for range 16 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open loop device: %w", err)
		}
		err = configureLoop(dev, backing, image, readOnly)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		lastErr = err
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		// Another process took this device between GET_FREE and now.
	}
	return nil, fmt.Errorf("attach %s to a loop device: %w", image, lastErr)
}

// configureLoop binds backing to dev: LOOP_CONFIGURE, or LOOP_SET_FD and
// LOOP_SET_STATUS64 on kernels older than 5.8.
func configureLoop(dev, backing *os.File, image string, readOnly bool) error {
	var info unix.LoopInfo64
	info.Flags = unix.LO_FLAGS_AUTOCLEAR
	if readOnly {
		info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	copy(info.File_name[:len(info.File_name)-1], image)
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Info: info}
	err := unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
	if err == nil || (!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY)) {
		return err
	}
	if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(int(dev.Fd()), &info); err != nil {
		_, _ = unix.IoctlRetInt(int(dev.Fd()), unix.LOOP_CLR_FD)
		return err
	}
	return nil
}
