package fsbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/internal/mountinfo"
)

// DropCaches writes back dirty data and drops the page, dentry and inode
// caches (echo 3 > /proc/sys/vm/drop_caches). It needs root.
func DropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

// residentBytes returns the resident memory (VmRSS) of process pid.
func residentBytes(pid int) (int64, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("daemon memory: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("daemon memory: %s: VmRSS %q: %w", path, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("daemon memory: %s has no VmRSS", path)
}

// mountPoints returns the mount points of this process's mount namespace,
// with their filesystem types.
func mountPoints() (map[string]string, error) {
	all, err := mountinfo.Read(0)
	if err != nil {
		return nil, err
	}
	mounts := make(map[string]string, len(all))
	for _, e := range all {
		mounts[e.MountPoint] = e.FSType
	}
	return mounts, nil
}

// mountType returns the filesystem type mounted at path, or "" when path
// is not a mount point.
func mountType(path string) (string, error) {
	mounts, err := mountPoints()
	if err != nil {
		return "", err
	}
	return mounts[filepath.Clean(path)], nil
}

// mountsUnder returns the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	mounts, err := mountPoints()
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var under []string
	for m := range mounts {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			under = append(under, m)
		}
	}
	sort.Slice(under, func(i, j int) bool { return len(under[i]) > len(under[j]) })
	return under, nil
}

// unmount unmounts path, retrying briefly while it is busy and detaching it
// lazily as a last resort (the error is still returned then).
func unmount(path string) error {
	var err error
	for range 50 {
		err = unix.Unmount(path, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // EINVAL: not (or no longer) a mount point
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if derr := unix.Unmount(path, unix.MNT_DETACH); derr == nil {
		return fmt.Errorf("unmount %s: %w (detached lazily)", path, err)
	}
	return fmt.Errorf("unmount %s: %w", path, err)
}

// waitMounted polls until a filesystem whose type satisfies ok is mounted
// at path; it gives up when exited is closed, ctx ends or timeout passes.
func waitMounted(ctx context.Context, path string, ok func(fstype string) bool, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		t, err := mountType(path)
		if err != nil {
			return err
		}
		if t != "" && ok(t) {
			return nil
		}
		select {
		case <-exited:
			return errors.New("daemon exited before the mount appeared")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no mount at %s after %v", path, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
