package graph

import "github.com/unionstack/unionstack/internal/mountinfo"

// mountInfo is one line of /proc/self/mountinfo.
type mountInfo = mountinfo.Entry

// readMountinfo reads the mount table of this process's mount namespace.
func readMountinfo() ([]mountInfo, error) {
	all, err := mountinfo.Read(0)
	if err != nil {
		return nil, errMountinfo(err)
	}
	return all, nil
}

// mountsUnder returns the mounts at root and below, in the order to
// unmount them: deepest first, and of mounts stacked on one path the top
// (latest) first.
func mountsUnder(root string) ([]mountInfo, error) {
	all, err := readMountinfo()
	if err != nil {
		return nil, err
	}
	return mountinfo.Under(all, root), nil
}
