package unionfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unionstack/unionstack/internal/testenv"
)

// testUnion is a mounted union for one test.
type testUnion struct {
	srv      *Server
	mnt      string
	branches []string // branch dirs, top first
	stack    []Branch // what it was mounted with, for remount
	opts     Options
}

// needFUSE skips unless the test can mount FUSE as root.
func needFUSE(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	_, err := os.Stat("/dev/fuse")
	testenv.Need(t, err == nil, "/dev/fuse missing")
}

// mountUnion makes branch dirs (first rw, the others with modes) and
// mounts them. files maps "branchIndex:path" → content ("/" suffix: dir).
func mountUnion(t testing.TB, modes []Mode, files map[string]string, opts Options) *testUnion {
	t.Helper()
	needFUSE(t)
	dir := t.TempDir()
	tu := &testUnion{mnt: filepath.Join(dir, "mnt")}
	if err := os.Mkdir(tu.mnt, 0755); err != nil {
		t.Fatal(err)
	}
	var brs []Branch
	for i, m := range modes {
		p := filepath.Join(dir, "b"+string(rune('0'+i)))
		if err := os.Mkdir(p, 0755); err != nil {
			t.Fatal(err)
		}
		tu.branches = append(tu.branches, p)
		brs = append(brs, Branch{Path: p, Mode: m})
	}
	for k, v := range files {
		i := int(k[0] - '0')
		p := filepath.Join(tu.branches[i], k[2:])
		if err := os.MkdirAll(filepath.Dir(p), 0755); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(k, "/") {
			if err := os.MkdirAll(p, 0755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(v), 0644); err != nil {
			t.Fatal(err)
		}
	}
	tu.stack, tu.opts = brs, opts
	tu.remount(t)
	t.Cleanup(func() { tu.unmount(t) })
	return tu
}

// remount mounts the union's branches (again, after unmount) with the
// options it was first mounted with.
func (tu *testUnion) remount(t testing.TB) {
	t.Helper()
	srv, err := Mount(tu.stack, tu.mnt, tu.opts)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	tu.srv = srv
}

func (tu *testUnion) unmount(t testing.TB) {
	if tu.srv == nil {
		return
	}
	for i := 0; i < 50; i++ {
		if err := tu.srv.Unmount(); err == nil {
			tu.srv = nil
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = exec.Command("umount", "-l", tu.mnt).Run()
	tu.srv = nil
}

// m is a path in the mount; b is a path in branch i.
func (tu *testUnion) m(p string) string        { return filepath.Join(tu.mnt, p) }
func (tu *testUnion) b(i int, p string) string { return filepath.Join(tu.branches[i], p) }

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func writeFile(t testing.TB, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0644); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
}

func mustNotExist(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatalf("%s: want not exist, got %v", p, err)
	}
}

func mustExist(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

func listDir(t testing.TB, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	sortStrings(names)
	return names
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
