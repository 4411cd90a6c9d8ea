package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unionstack/unionstack/drivers/fuse/fusetest"
	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/mountinfo"

	_ "github.com/unionstack/unionstack/drivers/vfs"
	_ "github.com/unionstack/unionstack/overlay"
)

// TestMain lets this test binary serve as the unionctl mount helper (the
// fuse driver's "fuse3.unionctl" mounts exec it as "unionctl SOURCE TARGET
// -o OPTIONS", and it re-execs itself as the daemon serving the union),
// runs the tests, and then checks that nothing they mounted or started is
// left: no mount below a directory the tests used, no FUSE daemon of this
// binary or of the unionctl binary the CLI tests built.
func TestMain(m *testing.M) {
	code := fusetest.Run(m)
	cleanupBinaries()
	exe, err := os.Executable()
	if err == nil {
		err = checkLeftovers(exe)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: FAIL: tests left things behind:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

var (
	trackedMu    sync.Mutex
	trackedRoots []string // directories below which tests mount
	trackedExes  []string // binaries whose processes are FUSE daemons of ours
)

// trackRoot records dir as a place tests mount below; the final check
// looks for mounts left there.
func trackRoot(dir string) {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	trackedMu.Lock()
	defer trackedMu.Unlock()
	trackedRoots = append(trackedRoots, dir)
}

// trackExe records a binary the tests run as a FUSE mount helper.
func trackExe(path string) {
	trackedMu.Lock()
	defer trackedMu.Unlock()
	trackedExes = append(trackedExes, path)
}

// tempRoot returns a fresh t.TempDir() that the final check watches, and
// unmounts (and reports) anything left mounted below it when the test
// ends: cleanups run last-registered first, so this runs before the
// directory's removal, which then finds nothing mounted.
func tempRoot(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	trackRoot(dir)
	t.Cleanup(func() { unmountBelow(t, dir) })
	return dir
}

// unmountBelow unmounts every mount at or below dir.
func unmountBelow(t testing.TB, dir string) {
	t.Helper()
	left, err := mountsBelow(dir)
	if err != nil {
		t.Errorf("read mountinfo: %v", err)
		return
	}
	if len(left) == 0 {
		return
	}
	t.Errorf("mounts left below %s when the test ended (unmounting them): %v", dir, left)
	if err := graph.UnmountAll(dir); err != nil {
		t.Errorf("unmount leftovers below %s: %v", dir, err)
	}
}

// mountsBelow lists the mount points at or below dir in this process's
// mount namespace.
func mountsBelow(dir string) ([]string, error) {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	all, err := mountinfo.Read(0)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range mountinfo.Under(all, dir) {
		out = append(out, e.MountPoint)
	}
	return out, nil
}

// checkLeftovers reports mounts left below any tracked root and processes
// still running this test binary or a tracked unionctl binary (FUSE
// daemons that outlived their mount).
func checkLeftovers(self string) error {
	var problems []string
	trackedMu.Lock()
	roots := append([]string(nil), trackedRoots...)
	exes := append([]string{self}, trackedExes...)
	trackedMu.Unlock()
	for _, r := range roots {
		left, err := mountsBelow(r)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, mp := range left {
			problems = append(problems, "still mounted: "+mp)
			_ = graph.UnmountAll(mp)
		}
	}
	// A daemon ends shortly after its mount is gone: give it a moment.
	var daemons []string
	for range 50 {
		if daemons = daemonsOf(exes); len(daemons) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	problems = append(problems, daemons...)
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(problems, "; "))
}

// daemonsOf lists the processes other than this one whose executable is
// one of exes.
func daemonsOf(exes []string) []string {
	want := map[string]bool{}
	for _, e := range exes {
		want[e] = true
		if real, err := filepath.EvalSymlinks(e); err == nil {
			want[real] = true
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	self := os.Getpid()
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == self {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		if want[exe] {
			cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			out = append(out, fmt.Sprintf("process %d (%s) still running: %s", pid, exe, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return out
}
