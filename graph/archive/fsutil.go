package archive

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Overlayfs xattr names.
const (
	overlayOpaqueTrusted = "trusted.overlay.opaque"
	overlayOpaqueUser    = "user.overlay.opaque"
	paxXattrPrefix       = "SCHILY.xattr."
)

// isDriverXattr reports whether name is a storage driver's own metadata
// (overlayfs's, or unionfs's origin records on copies), which is never
// layer content: it is neither exported nor applied from a tar.
func isDriverXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") ||
		strings.HasPrefix(name, "trusted.unionfs.")
}

// procPath names base in the directory open as dirfd, for the few calls
// that have no *at form (lsetxattr, llistxattr, lgetxattr). The final
// component is never followed by the l* calls.
func procPath(dirfd int, base string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
}

// removeAt removes name in dirfd, recursively when it is a directory. It
// never follows symlinks. It reports whether a directory was removed.
func removeAt(dirfd int, name string) (bool, error) {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return false, nil
	}
	if err != unix.EISDIR {
		return false, err
	}
	return true, removeDirAt(dirfd, name)
}

func removeDirAt(dirfd int, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	names, err := readDirNames(fd)
	if err == nil {
		for _, n := range names {
			if _, err = removeAt(fd, n); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// readDirNames lists the directory open as fd (not closing it).
func readDirNames(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(dup)
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	if _, err := unix.Seek(dup, 0, 0); err != nil {
		return nil, err
	}
	return f.Readdirnames(-1)
}

// listXattrs returns the xattrs of path (not following a final symlink),
// overlayfs's own excluded.
func listXattrs(path string) (map[string][]byte, error) {
	buf := make([]byte, 4096)
	var n int
	var err error
	for {
		n, err = unix.Llistxattr(path, buf)
		if err == unix.ERANGE {
			buf = make([]byte, len(buf)*4)
			continue
		}
		break
	}
	if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out map[string][]byte
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) == 0 || isDriverXattr(string(name)) {
			continue
		}
		v, err := getXattr(path, string(name))
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return nil, err
		}
		if out == nil {
			out = map[string][]byte{}
		}
		out[string(name)] = v
	}
	return out, nil
}

// getXattr reads one xattr of path (not following a final symlink).
func getXattr(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if err == unix.ERANGE {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// isWhiteoutDev reports whether st is an overlayfs whiteout (0/0 char dev).
func isWhiteoutDev(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// fdFile wraps an open fd as an *os.File named name.
func fdFile(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }

var (
	umaskOnce  sync.Once
	umaskValue uint32
	umaskKnown bool
)

// processUmask returns the process's umask, read from /proc (reading it
// with umask(2) would change it for a moment under other goroutines).
func processUmask() (uint32, bool) {
	umaskOnce.Do(func() {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
				umaskValue, umaskKnown = uint32(n), err == nil
			}
		}
	})
	return umaskValue, umaskKnown
}
