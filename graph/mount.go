package graph

// MountAll mounts mounts at target, in order: "bind" (with "ro" and
// "rbind" options), "overlay", block filesystems ("ext4", "xfs" on a device
// or image file) and "fuse3.HELPER" (runs HELPER SOURCE TARGET -o OPTIONS
// as mount(8) would, found in PATH). A Mount's Target is a path below
// target. On failure, what was mounted is unmounted again.
func MountAll(mounts []Mount, target string) error {
	return Errorf(ErrNotImplemented, "mount", target, "not written yet")
}

// UnmountAll unmounts everything mounted at target and below it, deepest
// first; a FUSE mount's daemon ends with it.
func UnmountAll(target string) error {
	return Errorf(ErrNotImplemented, "unmount", target, "not written yet")
}
