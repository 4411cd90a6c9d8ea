package unionfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/unionstack/unionstack/internal/testenv"
)

// The test binary serves as the mount daemon and the mount helper, as
// drivers/fuse's tests use it: re-executed by StartDaemon (DaemonMain), or
// run through a symlink named unionctl (HelperMain).
func init() {
	if handled, code := DaemonMain(); handled {
		os.Exit(code)
	}
	if filepath.Base(os.Args[0]) == "unionctl" {
		os.Exit(HelperMain(os.Args))
	}
}

// daemonTestDirs makes a/f1, b/f2 and an empty mnt under a temp dir.
func daemonTestDirs(t *testing.T) (dir, mnt string) {
	t.Helper()
	testenv.NeedRoot(t)
	_, err := os.Stat("/dev/fuse")
	testenv.Need(t, err == nil, "/dev/fuse missing (no FUSE)")
	dir = t.TempDir()
	for _, d := range []string{"a", "b", "mnt"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a/f1", "b/f2"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mnt = filepath.Join(dir, "mnt")
	t.Cleanup(func() {
		pid := DaemonPid(mnt)
		if IsMounted(mnt) {
			if err := Umount(mnt); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
		if pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return dir, mnt
}

// TestStartDaemon mounts through a daemon that is this test binary,
// lists its branches over the control socket and unmounts it.
func TestStartDaemon(t *testing.T) {
	dir, mnt := daemonTestDirs(t)
	spec, err := SpecFromArgs("none", []string{"dirs=a:b"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := StartDaemon(spec, mnt); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "f2")); err != nil {
		t.Errorf("f2 through the union: %v", err)
	}
	brs, err := ControlBranches(mnt)
	if err != nil || len(brs) != 2 || brs[0] != (Branch{filepath.Join(dir, "a"), RW}) || brs[1].Mode != RO {
		t.Errorf("ControlBranches = %v, %v", brs, err)
	}
	if err := StartDaemon(spec, mnt); !errors.Is(err, ErrBadSpec) {
		t.Errorf("second StartDaemon on the same mountpoint = %v; want ErrBadSpec", err)
	}
	pid := DaemonPid(mnt)
	if err := Umount(mnt); err != nil {
		t.Fatal(err)
	}
	if IsMounted(mnt) || DaemonPid(mnt) != 0 || daemonProcessAlive(pid) {
		t.Errorf("after Umount: mounted %v, daemon %d, pid %d alive %v", IsMounted(mnt), DaemonPid(mnt), pid, daemonProcessAlive(pid))
	}
	if err := Umount(mnt); !errors.Is(err, ErrNotUnionMount) {
		t.Errorf("Umount of a plain dir = %v; want ErrNotUnionMount", err)
	}
}

// TestHelperMain runs the mount-helper argv form through a symlink named
// unionctl pointing at this test binary.
func TestHelperMain(t *testing.T) {
	dir, mnt := daemonTestDirs(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "unionctl")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "-o", "rw,dirs=./a=rw:./b=ro", "none", "./mnt")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	names, err := os.ReadDir(mnt)
	if err != nil || len(names) != 2 {
		t.Errorf("ls mnt = %v, %v; want f1 f2", names, err)
	}
	if err := Umount(mnt); err != nil {
		t.Fatal(err)
	}

	cmd = exec.Command(link, "none", "./mnt", "-o", "dirs=./a:./a")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "given twice") {
		t.Errorf("helper with a duplicate branch: %v: %s; want exit 2 naming it", err, out)
	}
	if IsMounted(mnt) {
		t.Error("a bad spec mounted something")
	}
}
