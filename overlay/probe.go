package overlay

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/graph"
)

// Feature names in the map Probe returns.
const (
	FeatureRedirectDir = "redirect_dir" // "on" when redirect_dir=on mounts and renames a lower dir
	FeatureMetacopy    = "metacopy"     // "on" when metacopy=on mounts (the driver never enables it)
	FeatureIndex       = "index"        // "on" when index=on mounts (the driver mounts index=off)
	FeatureUserXattr   = "userxattr"    // "on" when userxattr mounts
	FeatureLowerdirAdd = "lowerdir+"    // "on" when the new mount API takes lowerdir+ (kernel 6.8+)
	FeatureBackingFS   = "backing_fs"   // the filesystem type under root
	FeatureDType       = "d_type"       // "true" when the backing fs returns d_type
	FeatureWhiteout    = "whiteout"     // "true" when 0/0 char devices and trusted xattrs can be made
	FeatureMaxDepth    = "max_depth"    // the deepest chain that mounts
	FeatureKernel      = "kernel"       // the kernel release
)

// probed caches probe results by the device of the probed root: every
// directory of one filesystem answers the same.
var (
	probedMu sync.Mutex
	probed   = map[uint64]probeResult{}
)

type probeResult struct {
	features map[string]string
	err      error
}

// Probe says whether overlayfs can keep its data under root on this host:
// overlay is a known filesystem, the backing filesystem returns d_type
// (xfs needs ftype=1), whiteouts (0/0 char devices, trusted.overlay.*
// xattrs) can be created, and an overlay actually mounts. It then mounts
// one with each optional feature to say which of redirect_dir, metacopy,
// index and userxattr are usable, and whether lowerdir+ (deep chains) is.
// Probe creates root if needed and leaves nothing else behind.
func Probe(root string) (map[string]string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, graph.Errorf(graph.ErrInvalidArgument, "probe overlay", root, "%v", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, graph.Wrap(err, "probe overlay", root)
	}
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil {
		return nil, graph.Wrap(err, "probe overlay", root)
	}
	probedMu.Lock()
	defer probedMu.Unlock()
	if r, ok := probed[st.Dev]; ok {
		return maps.Clone(r.features), r.err
	}
	features, err := probe(root)
	if err != nil && !errors.Is(err, graph.ErrNotSupported) {
		return features, graph.Wrap(err, "probe overlay", root) // not a verdict: do not cache
	}
	if err != nil {
		err = graph.Wrap(err, "probe overlay", root)
	}
	probed[st.Dev] = probeResult{features: maps.Clone(features), err: err}
	return features, err
}

// notSupported returns an error wrapping graph.ErrNotSupported with reason.
func notSupported(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), graph.ErrNotSupported)
}

func probe(root string) (map[string]string, error) {
	f := map[string]string{FeatureMaxDepth: strconv.Itoa(MaxDepth)}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		f[FeatureKernel] = unix.ByteSliceToString(uts.Release[:])
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(root, &sfs); err != nil {
		return f, fmt.Errorf("statfs: %w", err)
	}
	fsName := fsTypeName(sfs.Type)
	f[FeatureBackingFS] = fsName

	known, err := overlayKnown()
	if err != nil {
		return f, err
	}
	if !known {
		return f, notSupported("overlay is not in /proc/filesystems (load the module: modprobe overlay)")
	}

	dir, err := os.MkdirTemp(root, ".probe-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)

	dtype, err := hasDType(dir)
	if err != nil {
		return f, err
	}
	if !dtype {
		return f, noDTypeError(fsName)
	}
	f[FeatureDType] = "true"

	if err := canWhiteout(dir); err != nil {
		return f, notSupported("backing filesystem %s: %v", fsName, err)
	}
	f[FeatureWhiteout] = "true"

	lower := filepath.Join(dir, "lower")
	if err := makeProbeLower(lower); err != nil {
		return f, err
	}
	if err := tryMount(dir, "base", lower, "", false); err != nil {
		return f, notSupported("overlayfs does not mount on backing filesystem %s: %v", fsName, err)
	}
	f[FeatureRedirectDir] = onOff(tryMount(dir, "redirect", lower, "redirect_dir=on", true) == nil)
	f[FeatureMetacopy] = onOff(tryMount(dir, "metacopy", lower, "metacopy=on", false) == nil)
	f[FeatureIndex] = onOff(tryMount(dir, "index", lower, "index=on", false) == nil)
	f[FeatureUserXattr] = onOff(tryMount(dir, "userxattr", lower, "userxattr", false) == nil)
	f[FeatureLowerdirAdd] = onOff(tryFsopen(dir, lower) == nil)
	return f, nil
}

func onOff(ok bool) string {
	if ok {
		return "on"
	}
	return "off"
}

// noDTypeError is the verdict on a backing filesystem fsName whose
// directory entries carry no type.
func noDTypeError(fsName string) error {
	if fsName == "xfs" {
		return notSupported("backing filesystem xfs was made without ftype=1, so it returns no d_type, which overlayfs needs (reformat with mkfs.xfs -n ftype=1)")
	}
	return notSupported("backing filesystem %s returns no d_type, which overlayfs needs", fsName)
}

// overlayKnown says whether /proc/filesystems lists overlay.
func overlayKnown() (bool, error) {
	fh, err := os.Open("/proc/filesystems")
	if err != nil {
		return false, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[len(fields)-1] == "overlay" {
			return true, nil
		}
	}
	return false, sc.Err()
}

// hasDType lists a directory holding a file and a directory with
// getdents64 and says whether the entries carry their type.
func hasDType(dir string) (bool, error) {
	d := filepath.Join(dir, "dtype")
	if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
		return false, err
	}
	if err := os.WriteFile(filepath.Join(d, "file"), nil, 0o644); err != nil {
		return false, err
	}
	fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return false, fmt.Errorf("getdents %s: %w", d, err)
		}
		if n <= 0 {
			return true, nil
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for off := 0; off+19 <= n; {
			reclen := int(buf[off+16]) | int(buf[off+17])<<8
			if reclen == 0 {
				break
			}
			if buf[off+18] == unix.DT_UNKNOWN {
				return false, nil
			}
			off += reclen
		}
	}
}

// canWhiteout makes a 0/0 character device and sets a trusted.overlay
// xattr, as overlayfs and native apply do in upper dirs.
func canWhiteout(dir string) error {
	wh := filepath.Join(dir, "whiteout")
	if err := unix.Mknod(wh, unix.S_IFCHR|0o600, 0); err != nil {
		return fmt.Errorf("cannot create a whiteout (0/0 character device): %w", err)
	}
	if err := unix.Setxattr(dir, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		return fmt.Errorf("cannot set trusted.overlay.* xattrs (needs root and xattr support): %w", err)
	}
	return nil
}

// makeProbeLower makes a lower dir holding a file and a directory.
func makeProbeLower(lower string) error {
	if err := os.MkdirAll(filepath.Join(lower, "dir"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(lower, "dir", "file"), []byte("probe\n"), 0o644)
}

// tryMount mounts lower with a fresh upper and work dir named after name,
// adding option (if any), and unmounts it again. With rename, it also
// renames the lower directory through the mount, which fails with EXDEV
// unless redirects work.
func tryMount(dir, name, lower, option string, rename bool) error {
	base := filepath.Join(dir, name)
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	data := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if option != "" {
		data += "," + option
	}
	if err := mountOverlay(merged, data); err != nil {
		return err
	}
	var renameErr error
	if rename {
		renameErr = os.Rename(filepath.Join(merged, "dir"), filepath.Join(merged, "renamed"))
	}
	if err := unmount(merged); err != nil {
		return err
	}
	return renameErr
}

// tryFsopen mounts two lower layers given as lowerdir+ through the new
// mount API and unmounts them again.
func tryFsopen(dir, lower string) error {
	base := filepath.Join(dir, "fsopen")
	lower2, merged := filepath.Join(base, "lower2"), filepath.Join(base, "merged")
	for _, d := range []string{lower2, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := mountOverlayFsopen(merged, []string{"lowerdir+=" + lower2, "lowerdir+=" + lower}); err != nil {
		return err
	}
	return unmount(merged)
}

// fsTypeName names a statfs f_type magic number.
func fsTypeName(magic int64) string {
	switch uint32(magic) {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs"
	case 0x794C7630:
		return "overlay"
	case 0x2FC12FC1:
		return "zfs"
	case 0x6969:
		return "nfs"
	case 0x65735546:
		return "fuse"
	case 0xF15F:
		return "ecryptfs"
	case 0x61756673:
		return "aufs"
	case 0xF2F52010:
		return "f2fs"
	}
	return fmt.Sprintf("0x%x", uint32(magic))
}
