package unionfs

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStatxBirthTime: statx(2) through the union reports the birth time
// of the top-most copy (of a lower file, of one made through the union,
// of an open file), and the union's link count of a hard-link group.
func TestStatxBirthTime(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:l": "lower", "1:d/keep": ""}, Options{Passthrough: true})
	if err := os.Link(tu.b(1, "l"), tu.b(1, "d/l2")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tu.m("n"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	statx := func(dirfd int, p string, flags int) unix.Statx_t {
		t.Helper()
		var stx unix.Statx_t
		if err := unix.Statx(dirfd, p, flags|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &stx); err != nil {
			t.Fatalf("statx %s: %v", p, err)
		}
		return stx
	}
	for name, backing := range map[string]string{"n": tu.b(0, "n"), "l": tu.b(1, "l")} {
		want := statx(unix.AT_FDCWD, backing, 0)
		if want.Mask&unix.STATX_BTIME == 0 {
			t.Skipf("the branches' file system has no birth time")
		}
		got := statx(unix.AT_FDCWD, tu.m(name), 0)
		if got.Mask&unix.STATX_BTIME == 0 || got.Btime != want.Btime {
			t.Errorf("%s: birth time %v (mask %#x), want %v", name, got.Btime, got.Mask, want.Btime)
		}
		if got.Size != want.Size || got.Mode != want.Mode {
			t.Errorf("%s: size %d mode %o, want %d %o", name, got.Size, got.Mode, want.Size, want.Mode)
		}
	}
	f, err := os.Open(tu.m("n"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, want := statx(int(f.Fd()), "", unix.AT_EMPTY_PATH), statx(unix.AT_FDCWD, tu.b(0, "n"), 0); got.Btime != want.Btime {
		t.Errorf("open n: birth time %v, want %v", got.Btime, want.Btime)
	}
	// Copied up, the group's names report the copy's birth time and the
	// union's link count (not the index's extra link).
	if err := os.WriteFile(tu.m("l"), []byte("changed"), 0); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"l", "d/l2"} {
		got := statx(unix.AT_FDCWD, tu.m(name), unix.AT_STATX_FORCE_SYNC)
		if want := statx(unix.AT_FDCWD, tu.b(0, "l"), 0); got.Btime != want.Btime || got.Nlink != 2 || got.Size != 7 {
			t.Errorf("%s after the copy-up: birth %v nlink %d size %d, want %v 2 7", name, got.Btime, got.Nlink, got.Size, want.Btime)
		}
	}
}
