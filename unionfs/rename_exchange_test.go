package unionfs

import (
	"errors"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRenameExchange swaps names with RENAME_EXCHANGE across branches: a
// lower file with an rw one, a lower file with a merged directory, and
// a lower directory with an rw one. Contents and inode numbers swap, the
// read-only branch is untouched, and a directory landing on a name a
// lower directory has does not merge with it, also after a remount.
func TestRenameExchange(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{
		"1:lf": "lower", "0:uf": "upper", "1:lf2": "lower2",
		"1:d/x": "x", "0:d/y": "y",
		"1:e/z": "z", "0:o/w": "w",
	}, Options{Passthrough: true})
	exchange := func(a, b string) error {
		return unix.Renameat2(unix.AT_FDCWD, tu.m(a), unix.AT_FDCWD, tu.m(b), unix.RENAME_EXCHANGE)
	}
	ino := func(p string) uint64 { return statT(t, tu.m(p)).Ino }
	inos := map[string]uint64{}
	for _, p := range []string{"lf", "uf", "lf2", "d", "e", "o"} {
		inos[p] = ino(p)
	}
	for _, pair := range [][2]string{{"lf", "uf"}, {"lf2", "d"}, {"e", "o"}} {
		if err := exchange(pair[0], pair[1]); err != nil {
			t.Fatalf("exchange %s and %s: %v", pair[0], pair[1], err)
		}
	}
	check := func(when string) {
		t.Helper()
		for p, want := range map[string]string{"lf": "upper", "uf": "lower", "d": "lower2", "lf2/x": "x", "lf2/y": "y", "e/w": "w", "o/z": "z"} {
			if got := readFile(t, tu.m(p)); got != want {
				t.Errorf("%s: %s = %q, want %q", when, p, got, want)
			}
		}
		for dir, want := range map[string]string{"": "d e lf lf2 o uf", "lf2": "x y", "e": "w", "o": "z"} {
			if got, err := lsNames(tu.m(dir)); err != nil || got != want {
				t.Errorf("%s: ls %q = %q, %v; want %q", when, dir, got, err, want)
			}
		}
	}
	check("after the exchanges")
	for a, b := range map[string]string{"lf": "uf", "lf2": "d", "e": "o"} {
		if ino(a) != inos[b] || ino(b) != inos[a] {
			t.Errorf("inode numbers of %s and %s did not swap: %d %d, were %d %d", a, b, ino(a), ino(b), inos[a], inos[b])
		}
	}
	for p, want := range map[string]string{"lf": "lower", "lf2": "lower2", "d/x": "x", "e/z": "z"} {
		if got := readFile(t, tu.b(1, p)); got != want {
			t.Errorf("read-only branch changed: %s = %q, want %q", p, got, want)
		}
	}
	if err := exchange("lf", "missing"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("exchange with a missing name: %v, want ENOENT", err)
	}
	tu.unmount(t)
	tu.remount(t)
	check("after a remount")
}
