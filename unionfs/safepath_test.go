package unionfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSwappedBranchDirsAreNotFollowed: a directory of a branch replaced
// from outside the mount by a symlink (to a directory the daemon may
// write and the caller may not) while the kernel still holds the old
// directory: what the union does below it then fails, and nothing
// outside the branches is created, written, changed, read, removed,
// looked up or listed.
func TestSwappedBranchDirsAreNotFollowed(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"0:d/victim": "mine", "0:d/gone": "x", "1:l/f": "lower"},
		Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour, NegativeTimeout: time.Hour, Passthrough: true})
	outside := t.TempDir()
	for name, data := range map[string]string{"victim": "safe", "gone": "keep", "f": "secret"} {
		if err := os.WriteFile(filepath.Join(outside, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The kernel looks everything up before the swap.
	for _, name := range []string{"d/victim", "d/gone", "l/f"} {
		statT(t, tu.m(name))
	}
	for _, b := range []struct {
		branch int
		dir    string
	}{{0, "d"}, {1, "l"}} {
		old := tu.b(b.branch, b.dir)
		if err := os.Rename(old, old+".old"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, old); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(op string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s through a swapped directory succeeded", op)
		} else if !errors.Is(err, unix.ELOOP) {
			t.Logf("%s: %v", op, err)
		}
	}
	refused("create", os.WriteFile(tu.m("d/escape"), []byte("x"), 0o644))
	refused("mkdir", os.Mkdir(tu.m("d/newdir"), 0o755))
	refused("symlink", os.Symlink("x", tu.m("d/newlink")))
	refused("open for writing", func() error {
		f, err := os.OpenFile(tu.m("d/victim"), os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			_, err = f.Write([]byte("pwned"))
			f.Close()
		}
		return err
	}())
	refused("chmod", os.Chmod(tu.m("d/victim"), 0o777))
	refused("truncate", os.Truncate(tu.m("d/victim"), 0))
	refused("setxattr", unix.Lsetxattr(tu.m("d/victim"), "user.x", []byte("1"), 0))
	refused("unlink", os.Remove(tu.m("d/gone")))
	refused("rename", os.Rename(tu.m("d/victim"), tu.m("moved")))
	refused("read", func() error { _, err := os.ReadFile(tu.m("l/f")); return err }())
	refused("copy-up", os.WriteFile(tu.m("l/f"), []byte("w"), 0))
	// Names only the symlink's target has are neither found nor listed
	// (a listing may still come from the name cache, as it was).
	refused("lookup", func() error { _, err := os.Lstat(tu.m("l/victim")); return err }())
	if ents, err := os.ReadDir(tu.m("l")); err == nil {
		for _, e := range ents {
			if e.Name() == "victim" || e.Name() == "gone" {
				t.Errorf("the union lists %s of the symlink's target", e.Name())
			}
		}
	}

	for name, want := range map[string]string{"victim": "safe", "gone": "keep", "f": "secret"} {
		p := filepath.Join(outside, name)
		got, err := os.ReadFile(p)
		if err != nil || string(got) != want {
			t.Errorf("outside %s: %q, %v; want %q", name, got, err, want)
		}
		if st := statT(t, p); st.Mode&0o777 != 0o644 {
			t.Errorf("outside %s: mode %o, want 644", name, st.Mode&0o777)
		}
		if _, err := unix.Lgetxattr(p, "user.x", nil); err != unix.ENODATA {
			t.Errorf("outside %s got user.x (%v)", name, err)
		}
	}
	for _, name := range []string{"escape", "newdir", "newlink"} {
		if _, err := os.Lstat(filepath.Join(outside, name)); !os.IsNotExist(err) {
			t.Errorf("outside %s was made (%v)", name, err)
		}
	}
	if _, err := os.Lstat(tu.b(0, "l/f")); !os.IsNotExist(err) {
		t.Errorf("the copy-up copied the outside file (%v)", err)
	}
}
