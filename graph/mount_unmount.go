package graph

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// UnmountAll unmounts everything mounted at target and below it, deepest
// first; a FUSE mount's daemon ends with it.
//
// A mount that stays busy is retried a few times and then detached
// (MNT_DETACH). A FUSE mount whose daemon died is unmounted like any other.
// A target with nothing mounted on it, or that does not exist, is not an
// error.
func UnmountAll(target string) error {
	const op = "unmount"
	root, err := resolveMountPath(target)
	if err != nil {
		return Wrap(err, op, target)
	}
	if root == "/" {
		return Errorf(ErrInvalidArgument, op, target, "refusing to unmount everything below /")
	}
	var errs []error
	// Unmounting can uncover mounts below (mounted over, or propagated in
	// meanwhile): repeat until nothing is left.
	for range 8 {
		infos, err := mountsUnder(root)
		if err != nil {
			return Wrap(err, op, target)
		}
		if len(infos) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, mi := range infos {
			if err := unmountOne(mi.MountPoint); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			break
		}
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("mounts keep reappearing below the target"))
	}
	return Wrap(errors.Join(errs...), op, target)
}

// unmountOne unmounts the mount on top of path: retried while busy, then
// detached.
func unmountOne(path string) error {
	var err error
	for i := range 5 {
		err = unix.Unmount(path, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // not (or no longer) a mount point
		case !errors.Is(err, unix.EBUSY):
			return &os.PathError{Op: "unmount", Path: path, Err: err}
		}
		time.Sleep(time.Duration(10<<i) * time.Millisecond)
	}
	if derr := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); derr != nil && !errors.Is(derr, unix.EINVAL) {
		return &os.PathError{Op: "unmount (busy, then detach)", Path: path, Err: errors.Join(err, derr)}
	}
	return nil
}

// IsMountPoint reports whether path is the root of a mount. It also answers
// for a FUSE mount whose daemon died (where stat fails).
func IsMountPoint(path string) (bool, error) {
	var stx unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, 0, &stx)
	if err == nil && stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	if err != nil && !errors.Is(err, unix.ENOTCONN) && !errors.Is(err, unix.EIO) {
		return false, &os.PathError{Op: "is mount point", Path: path, Err: err}
	}
	real, rerr := resolveMountPath(path)
	if rerr != nil {
		return false, rerr
	}
	infos, merr := readMountinfo()
	if merr != nil {
		return false, merr
	}
	for _, mi := range infos {
		if mi.MountPoint == real {
			return true, nil
		}
	}
	return false, nil
}

// resolveMountPath makes path absolute and resolves symlinks as the kernel
// shows mount points in mountinfo. A dead FUSE mount cannot be stat'ed:
// then only its parent is resolved.
func resolveMountPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	dir, base := filepath.Split(abs)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		return filepath.Join(real, base), nil
	}
	return abs, nil
}

// errMountinfo wraps failures to read the mount table.
func errMountinfo(err error) error { return fmt.Errorf("read /proc/self/mountinfo: %w", err) }
