package unionfs

import "github.com/unionstack/unionstack/internal/mountinfo"

// daemonUnionFSTypes are the file system types a union mount shows in
// /proc/self/mountinfo.
var daemonUnionFSTypes = map[string]bool{"fuse.unionctl": true, "fuse3.unionctl": true, "fuse.unionfs": true}

// daemonFindMount returns the topmost mount at mountpoint in this
// process's mount namespace, if any.
func daemonFindMount(mountpoint string) (mountinfo.Entry, bool, error) {
	return daemonFindMountIn(0, mountpoint)
}

// daemonFindMountIn returns the topmost mount at mountpoint in the mount
// namespace of process pid (0: this process), if any.
func daemonFindMountIn(pid int, mountpoint string) (mountinfo.Entry, bool, error) {
	all, err := mountinfo.Read(pid)
	if err != nil {
		return mountinfo.Entry{}, false, err
	}
	e, ok := mountinfo.Top(all, mountpoint)
	return e, ok, nil
}
