package graph

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

const fuseSuperMagic = 0x65735546

// fuseOverlayForTest is a "fuse3.fuse-overlayfs" mount: fuse-overlayfs is a
// real FUSE mount helper that takes SOURCE TARGET -o OPTIONS as mount.fuse3
// passes them.
func fuseOverlayForTest(t *testing.T) (m Mount, lower string) {
	t.Helper()
	testenv.NeedRoot(t)
	_, err := os.Stat("/dev/fuse")
	testenv.Need(t, err == nil, "FUSE (/dev/fuse)")
	testenv.NeedCommand(t, "fuse-overlayfs")
	dir := t.TempDir()
	lower, upper, work := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFileForTest(t, filepath.Join(lower, "f"), "through fuse")
	return Mount{Type: "fuse3.fuse-overlayfs", Source: "overlay", Options: []string{
		"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work,
	}}, lower
}

func TestMountFuseHelper(t *testing.T) {
	m, _ := fuseOverlayForTest(t)
	tgt := t.TempDir()
	mountAllForTest(t, []Mount{m}, tgt)
	var st unix.Statfs_t
	if err := unix.Statfs(tgt, &st); err != nil || st.Type != fuseSuperMagic {
		t.Errorf("statfs of the mount: type %#x, %v; want FUSE", st.Type, err)
	}
	wantFileForTest(t, filepath.Join(tgt, "f"), "through fuse")
	writeFileForTest(t, filepath.Join(tgt, "g"), "new")
	pid := fuseDaemonForTest(t, tgt)

	if err := UnmountAll(tgt); err != nil {
		t.Fatal(err)
	}
	wantMounted(t, tgt, false)
	waitGoneForTest(t, pid)
}

func TestMountFuseDeadDaemon(t *testing.T) {
	m, _ := fuseOverlayForTest(t)
	tgt := t.TempDir()
	mountAllForTest(t, []Mount{m}, tgt)
	pid := fuseDaemonForTest(t, tgt)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGoneForTest(t, pid)
	_, err := os.Stat(filepath.Join(tgt, "f"))
	if !errors.Is(err, syscall.ENOTCONN) {
		t.Logf("stat in the dead mount: %v (expected ENOTCONN)", err)
	}
	wantMounted(t, tgt, true)
	if err := UnmountAll(tgt); err != nil {
		t.Fatalf("UnmountAll of a dead FUSE mount: %v", err)
	}
	wantMounted(t, tgt, false)
}

func TestMountFuseHelperErrors(t *testing.T) {
	m, _ := fuseOverlayForTest(t)
	tgt := t.TempDir()

	bad := m
	bad.Options = []string{"lowerdir=" + filepath.Join(tgt, "no-such-layer"), m.Options[1], m.Options[2]}
	err := MountAll([]Mount{bad}, tgt)
	if err == nil {
		_ = UnmountAll(tgt)
		t.Fatal("fuse-overlayfs on a missing layer mounted")
	}
	// The error carries what the helper said.
	if !strings.Contains(err.Error(), "fuse-overlayfs") || !strings.Contains(err.Error(), "lower") {
		t.Errorf("error %q does not carry the helper's complaint", err)
	}
	wantMounted(t, tgt, false)

	err = MountAll([]Mount{{Type: "fuse3.no-such-mount-helper", Source: "x"}}, tgt)
	wantErrIs(t, "missing helper", err, ErrNotSupported)
	wantErrIs(t, "type without helper", MountAll([]Mount{{Type: "fuse3.", Source: "x"}}, tgt), ErrInvalidArgument)
}

// fuseDaemonForTest finds the process serving the FUSE mount at tgt.
func fuseDaemonForTest(t *testing.T, tgt string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(cmdline, []byte{0})
		if len(args) > 2 && filepath.Base(string(args[0])) == "fuse-overlayfs" && string(args[2]) == tgt {
			return pid
		}
	}
	t.Fatalf("no fuse-overlayfs process serves %s", tgt)
	return 0
}

// waitGoneForTest waits for process pid to end (a zombie counts as ended).
func waitGoneForTest(t *testing.T, pid int) {
	t.Helper()
	for range 200 {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return
		}
		if _, after, ok := bytes.Cut(stat, []byte(") ")); ok && len(after) > 0 && (after[0] == 'Z' || after[0] == 'X') {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("process %d still running", pid)
}
