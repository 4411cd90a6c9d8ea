// Package testenv decides what a test does when the host lacks something it
// needs: skip with the reason, or, under UNIONSTACK_REQUIRE_ALL=1 (as CI
// runs), fail, so that a missing component never passes silently. It also
// opens a test's temporary directories to the other users a test acts as.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireAll reports whether UNIONSTACK_REQUIRE_ALL=1 is set.
func RequireAll() bool { return os.Getenv("UNIONSTACK_REQUIRE_ALL") == "1" }

// Need skips t (or fails it under RequireAll) with reason unless ok.
func Need(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if RequireAll() {
		t.Fatalf("required component missing (UNIONSTACK_REQUIRE_ALL=1): %s", reason)
	}
	t.Skip("skipped: " + reason)
}

// NeedRoot needs the test to run as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	Need(t, os.Geteuid() == 0, "needs root")
}

// NeedCommand needs program name in PATH and returns its path.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, err == nil, name+" not in PATH (install its Debian package)")
	return p
}

// OpenTempDirs lets every user walk down to dir: the directories Go's
// testing makes under os.TempDir() are 0700, so a test that acts as an
// unprivileged user (nobody) opens the ones on the way, dir included.
func OpenTempDirs(t testing.TB, dir string) {
	t.Helper()
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Clean(dir); strings.HasPrefix(d, tmp+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// MakeImage makes a file system image of size bytes in a new temporary
// directory with the mkfs command named (skipping, or failing under
// UNIONSTACK_REQUIRE_ALL, where it is missing) given args before the
// image's path, and returns that path.
func MakeImage(t testing.TB, mkfs string, size int64, args ...string) string {
	t.Helper()
	cmd := NeedCommand(t, mkfs)
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cmd, append(args, img)...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", mkfs, img, err, out)
	}
	return img
}

// LoopMount mounts image img at dir through a loop device (mount -o
// loop), skipping (or failing under UNIONSTACK_REQUIRE_ALL) where the
// host cannot, and unmounts it (lazily) at cleanup: after the cleanups
// the test registers later, such as a union's unmount on top of it.
func LoopMount(t testing.TB, img, dir string) {
	t.Helper()
	out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput()
	Need(t, err == nil, "loop-mount "+img+": "+strings.TrimSpace(string(out)))
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("unmount %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
		}
	})
}
