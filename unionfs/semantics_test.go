package unionfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestReaddirMergeAndWhiteouts(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO, RO}, map[string]string{
		"0:a":        "upper",
		"0:d/u":      "",
		"0:.wh.gone": "",
		"1:a":        "lower",
		"1:b":        "",
		"1:.wh.c":    "",
		"1:gone":     "",
		"2:c":        "",
		"2:e":        "",
		"2:d/l":      "",
	}, Options{})
	if got, want := listDir(t, tu.mnt), []string{"a", "b", "d", "e"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls = %v, want %v", got, want)
	}
	if got, want := listDir(t, tu.m("d")), []string{"l", "u"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls d = %v, want %v", got, want)
	}
	if got := readFile(t, tu.m("a")); got != "upper" {
		t.Errorf("a = %q, top branch must win", got)
	}
	mustNotExist(t, tu.m("c"))
	mustNotExist(t, tu.m("gone"))
	mustNotExist(t, tu.m(".wh.c"))
}

func TestOpaqueDirStopsMerge(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO, RO}, map[string]string{
		"1:dir/.wh..wh..opq": "",
		"1:dir/x":            "",
		"2:dir/y":            "",
	}, Options{})
	if got, want := listDir(t, tu.m("dir")), []string{"x"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls dir = %v, want %v", got, want)
	}
	mustNotExist(t, tu.m("dir/y"))
}

func TestRRBranchWhiteoutsIgnored(t *testing.T) {
	files := map[string]string{"1:.wh.x": "", "1:dir/.wh..wh..opq": "", "2:x": "", "2:dir/y": ""}
	ro := mountUnion(t, []Mode{RW, RO, RO}, files, Options{})
	mustNotExist(t, ro.m("x"))
	mustNotExist(t, ro.m("dir/y"))
	rr := mountUnion(t, []Mode{RW, RR, RO}, files, Options{})
	mustExist(t, rr.m("x"))
	mustExist(t, rr.m("dir/y"))
	if got, want := listDir(t, rr.mnt), []string{"dir", "x"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls = %v, want %v", got, want)
	}
}

// readDirents reads dirents of fd with a small buffer, returning names
// and the offset after each.
func readDirents(t *testing.T, fd int, max int) (names []string, offs []int64) {
	buf := make([]byte, 512)
	for max < 0 || len(names) < max {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		b := buf[:n]
		for len(b) > 0 {
			reclen := int(uint16(b[16]) | uint16(b[17])<<8)
			off := int64(0)
			for i := 7; i >= 0; i-- {
				off = off<<8 | int64(b[8+i])
			}
			name := string(b[19:reclen])
			name = name[:strings.IndexByte(name, 0)]
			names = append(names, name)
			offs = append(offs, off)
			b = b[reclen:]
		}
	}
	return names, offs
}

func TestSeekdirStable(t *testing.T) {
	files := map[string]string{}
	for i := 0; i < 60; i++ {
		files["1:f"+string(rune('A'+i%26))+string(rune('a'+i/26))] = ""
		files["0:g"+string(rune('A'+i%26))+string(rune('a'+i/26))] = ""
	}
	tu := mountUnion(t, []Mode{RW, RO}, files, Options{})
	fd, err := unix.Open(tu.mnt, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	all, offs := readDirents(t, fd, -1)
	if len(all) != 122 {
		t.Fatalf("got %d entries, want 122 (+ . ..)", len(all))
	}
	// Change the directory, then seek back into the listing.
	for _, n := range all[10:30] {
		if n != "." && n != ".." {
			if err := os.Remove(tu.m(n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeFile(t, tu.m("new"), "")
	k := 40
	if _, err := unix.Seek(fd, offs[k], 0); err != nil {
		t.Fatal(err)
	}
	rest, _ := readDirents(t, fd, -1)
	if !reflect.DeepEqual(rest, all[k+1:]) {
		t.Fatalf("after seekdir got %v\nwant %v", rest, all[k+1:])
	}
}

func statT(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func TestCopyUpTriggers(t *testing.T) {
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	type trig struct {
		name                                               string
		do                                                 func(t *testing.T, p string)
		keepData, keepMode, keepOwner, keepTime, keepXattr bool
	}
	trigs := []trig{
		{"open-write", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}, true, true, true, true, true},
		{"truncate", func(t *testing.T, p string) {
			if err := os.Truncate(p, 2); err != nil {
				t.Fatal(err)
			}
		}, false, true, true, false, true},
		{"chmod", func(t *testing.T, p string) {
			if err := os.Chmod(p, 0600); err != nil {
				t.Fatal(err)
			}
		}, true, false, true, true, true},
		{"chown", func(t *testing.T, p string) {
			if err := os.Lchown(p, 4321, 8765); err != nil {
				t.Fatal(err)
			}
		}, true, true, false, true, true},
		{"utimes", func(t *testing.T, p string) {
			if err := os.Chtimes(p, time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
				t.Fatal(err)
			}
		}, true, true, true, false, true},
		{"setxattr", func(t *testing.T, p string) {
			if err := unix.Lsetxattr(p, "user.other", []byte("x"), 0); err != nil {
				t.Fatal(err)
			}
		}, true, true, true, true, true},
		{"removexattr", func(t *testing.T, p string) {
			if err := unix.Lremovexattr(p, "user.foo"); err != nil {
				t.Fatal(err)
			}
		}, true, true, true, true, false},
		{"link", func(t *testing.T, p string) {
			if err := os.Link(p, p+".link"); err != nil {
				t.Fatal(err)
			}
		}, true, true, true, true, true},
	}
	for _, tr := range trigs {
		t.Run(tr.name, func(t *testing.T) {
			tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:dir/f": "lower data"}, Options{})
			lp := tu.b(1, "dir/f")
			for _, p := range []string{tu.b(1, "dir"), lp} {
				if err := os.Chmod(p, 0751); err != nil {
					t.Fatal(err)
				}
				if err := os.Lchown(p, 1234, 5678); err != nil {
					t.Fatal(err)
				}
				if err := unix.Lsetxattr(p, "user.foo", []byte("bar"), 0); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(p, mtime, mtime); err != nil {
					t.Fatal(err)
				}
			}
			before := statT(t, tu.m("dir/f"))
			tr.do(t, tu.m("dir/f"))
			up := tu.b(0, "dir/f")
			ust := statT(t, up)
			if got := readFile(t, lp); got != "lower data" {
				t.Errorf("lower changed: %q", got)
			}
			if tr.keepData && readFile(t, up) != "lower data" {
				t.Errorf("upper data %q", readFile(t, up))
			}
			if tr.keepMode && ust.Mode&07777 != 0751 {
				t.Errorf("mode %o, want 751", ust.Mode&07777)
			}
			if tr.keepOwner && (ust.Uid != 1234 || ust.Gid != 5678) {
				t.Errorf("owner %d:%d", ust.Uid, ust.Gid)
			}
			if tr.keepTime && ust.Mtim.Sec != mtime.Unix() {
				t.Errorf("mtime %d, want %d", ust.Mtim.Sec, mtime.Unix())
			}
			if tr.keepXattr {
				buf := make([]byte, 16)
				n, err := unix.Lgetxattr(up, "user.foo", buf)
				if err != nil || string(buf[:n]) != "bar" {
					t.Errorf("xattr user.foo = %q, %v", buf[:n], err)
				}
			}
			// The copied-up parent keeps its metadata.
			dst := statT(t, tu.b(0, "dir"))
			if dst.Mode&07777 != 0751 || dst.Uid != 1234 || dst.Gid != 5678 {
				t.Errorf("parent dir mode %o owner %d:%d", dst.Mode&07777, dst.Uid, dst.Gid)
			}
			if tr.name != "link" && dst.Mtim.Sec != mtime.Unix() {
				t.Errorf("parent dir mtime %d, want %d", dst.Mtim.Sec, mtime.Unix())
			}
			buf := make([]byte, 16)
			if n, err := unix.Lgetxattr(tu.b(0, "dir"), "user.foo", buf); err != nil || string(buf[:n]) != "bar" {
				t.Errorf("parent xattr = %q, %v", buf[:n], err)
			}
			// Inode number stays across copy-up.
			if after := statT(t, tu.m("dir/f")); after.Ino != before.Ino {
				t.Errorf("ino changed across copy-up: %d -> %d", before.Ino, after.Ino)
			}
		})
	}
}

func TestCreateLandsInRWWithParents(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:a/b/": ""}, Options{})
	if err := os.Chmod(tu.b(1, "a/b"), 0705); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tu.m("a/b/file"), "x")
	if err := os.Mkdir(tu.m("a/b/dir"), 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", tu.m("a/b/sym")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(tu.m("a/b/fifo"), 0644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(tu.m("a/b/null"), syscall.S_IFCHR|0666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(tu.m("a/b/file"), tu.m("a/b/hard")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"file", "dir", "sym", "fifo", "null", "hard"} {
		mustExist(t, tu.b(0, "a/b/"+n))
		mustNotExist(t, tu.b(1, "a/b/"+n))
	}
	if st := statT(t, tu.b(0, "a/b")); st.Mode&07777 != 0705 {
		t.Errorf("copied-up parent mode %o, want 705", st.Mode&07777)
	}
	if st := statT(t, tu.m("a/b/null")); st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("device node: mode %o rdev %d", st.Mode, st.Rdev)
	}
}

func TestUnlinkWritesWhiteout(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "lower", "1:d/g": "lower", "0:u": "up"}, Options{})
	if err := os.Remove(tu.m("f")); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, tu.m("f"))
	mustExist(t, tu.b(0, ".wh.f"))
	mustExist(t, tu.b(1, "f"))
	if err := os.Remove(tu.m("d/g")); err != nil {
		t.Fatal(err)
	}
	mustExist(t, tu.b(0, "d/.wh.g"))
	// An upper-only file leaves no whiteout.
	if err := os.Remove(tu.m("u")); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, tu.b(0, ".wh.u"))
	if got, want := listDir(t, tu.mnt), []string{"d"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls = %v, want %v", got, want)
	}
	// Creating the name again drops the whiteout.
	writeFile(t, tu.m("f"), "new")
	mustNotExist(t, tu.b(0, ".wh.f"))
	if got := readFile(t, tu.m("f")); got != "new" {
		t.Errorf("f = %q", got)
	}
}

// TestCreateBesideStaleWhiteout creates a name in a directory only the
// rw branch has, beside a whiteout of that name left from outside (as a
// removed branch leaves them). Such a whiteout hides nothing: the new
// file shows, and once a branch holding the name is added below and the
// file is removed through the union, the name stays gone.
func TestCreateBesideStaleWhiteout(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"0:d/.wh.x": "", "1:other": ""}, Options{})
	writeFile(t, tu.m("d/x"), "new")
	if got := readFile(t, tu.m("d/x")); got != "new" {
		t.Fatalf("d/x = %q", got)
	}
	if got, want := listDir(t, tu.m("d")), []string{"x"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls d = %v, want %v", got, want)
	}
	extra := filepath.Join(t.TempDir(), "extra")
	if err := os.MkdirAll(filepath.Join(extra, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(extra, "d", "x"), "lower x")
	if err := tu.srv.AddBranch(Branch{Path: extra, Mode: RO}, 1); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, tu.m("d/x")); got != "new" {
		t.Fatalf("d/x = %q after a branch was added below, want the rw file", got)
	}
	if err := os.Remove(tu.m("d/x")); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, tu.m("d/x"))
	if got := listDir(t, tu.m("d")); len(got) != 0 {
		t.Fatalf("ls d = %v after the remove, want nothing", got)
	}
}

// TestUnlinkAfterOutsideChange unlinks a lower file that the rw branch
// got a copy of from outside after the union looked the name up: once
// the entry timeout passed, the unlink removes that copy too (the kernel
// looks the name up again first), and the name is gone.
func TestUnlinkAfterOutsideChange(t *testing.T) {
	to := 100 * time.Millisecond
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:d/f": "lower", "0:d/": ""},
		Options{EntryTimeout: to, AttrTimeout: to, NegativeTimeout: to})
	if got := readFile(t, tu.m("d/f")); got != "lower" {
		t.Fatalf("d/f = %q", got)
	}
	writeFile(t, tu.b(0, "d/f"), "upper from outside")
	time.Sleep(3 * to)
	if err := os.Remove(tu.m("d/f")); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, tu.m("d/f"))
	mustNotExist(t, tu.b(0, "d/f"))
	mustExist(t, tu.b(0, "d/.wh.f"))
	mustExist(t, tu.b(1, "d/f"))
}

// TestCopyUpTakesLowerAsItIsNow changes a lower file from outside while
// a descriptor of it is open, then copies it up through that descriptor
// (fchmod, no new lookup): the copy holds the file as it is at the
// copy-up, not as it was when looked up.
func TestCopyUpTakesLowerAsItIsNow(t *testing.T) {
	to := 100 * time.Millisecond
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "old"},
		Options{EntryTimeout: to, AttrTimeout: to, NegativeTimeout: to})
	f, err := os.Open(tu.m("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	writeFile(t, tu.b(1, "f"), "old, and more written from outside")
	time.Sleep(3 * to)
	if err := f.Chmod(0o600); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, tu.b(0, "f")); got != "old, and more written from outside" {
		t.Errorf("upper copy holds %q, want the lower file as it was at the copy-up", got)
	}
}

func TestRmdirWhiteoutAndOpaque(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:d/x": "", "1:d/sub/y": "", "0:d/u": ""}, Options{})
	if err := syscall.Rmdir(tu.m("d")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir non-empty merged dir: %v, want ENOTEMPTY", err)
	}
	if err := os.RemoveAll(tu.m("d")); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, tu.m("d"))
	mustExist(t, tu.b(0, ".wh.d"))
	mustExist(t, tu.b(1, "d/x"))
	if err := os.Mkdir(tu.m("d"), 0755); err != nil {
		t.Fatal(err)
	}
	mustExist(t, tu.b(0, "d/.wh..wh..opq"))
	mustNotExist(t, tu.b(0, ".wh.d"))
	if got := listDir(t, tu.m("d")); len(got) != 0 {
		t.Fatalf("new dir over removed one lists %v, want empty", got)
	}
	mustNotExist(t, tu.m("d/x"))
}

func TestRenameAcrossBranches(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{
		"1:f":          "file",
		"1:dir/a":      "A",
		"1:dir/sub/b":  "B",
		"0:dir/c":      "C",
		"1:dir/.wh.zz": "",
		"1:other":      "o",
	}, Options{})
	if err := os.Rename(tu.m("f"), tu.m("g")); err != nil {
		t.Fatalf("rename file: %v", err)
	}
	mustNotExist(t, tu.m("f"))
	if got := readFile(t, tu.m("g")); got != "file" {
		t.Errorf("g = %q", got)
	}
	mustExist(t, tu.b(1, "f"))
	st := statT(t, tu.m("dir/sub/b"))
	if err := os.Rename(tu.m("dir"), tu.m("moved")); err != nil {
		t.Fatalf("rename dir: %v", err)
	}
	mustNotExist(t, tu.m("dir"))
	if got, want := listDir(t, tu.m("moved")), []string{"a", "c", "sub"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls moved = %v, want %v", got, want)
	}
	if got := readFile(t, tu.m("moved/sub/b")); got != "B" {
		t.Errorf("moved/sub/b = %q", got)
	}
	if st2 := statT(t, tu.m("moved/sub/b")); st2.Ino != st.Ino {
		t.Errorf("ino changed across dir rename: %d -> %d", st.Ino, st2.Ino)
	}
	mustExist(t, tu.b(1, "dir/a"))
	// Rename over an existing lower file, and NOREPLACE.
	if err := unix.Renameat2(unix.AT_FDCWD, tu.m("g"), unix.AT_FDCWD, tu.m("other"), unix.RENAME_NOREPLACE); !errors.Is(err, unix.EEXIST) {
		t.Errorf("RENAME_NOREPLACE over existing: %v, want EEXIST", err)
	}
	if err := os.Rename(tu.m("g"), tu.m("other")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, tu.m("other")); got != "file" {
		t.Errorf("other = %q", got)
	}
	if got, want := listDir(t, tu.mnt), []string{"moved", "other"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls = %v, want %v", got, want)
	}
	// A dir renamed onto a removed lower dir's name must not show the old contents.
	if err := os.Mkdir(tu.m("fresh"), 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tu.m("fresh"), tu.m("dir")); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, tu.m("dir")); len(got) != 0 {
		t.Errorf("renamed-onto dir lists %v, want empty", got)
	}
}

func TestHardLinkNlinkAndIno(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "x"}, Options{})
	st0 := statT(t, tu.m("f"))
	if err := os.Link(tu.m("f"), tu.m("g")); err != nil {
		t.Fatal(err)
	}
	a, b := statT(t, tu.m("f")), statT(t, tu.m("g"))
	if a.Nlink != 2 || b.Nlink != 2 {
		t.Errorf("nlink %d %d, want 2", a.Nlink, b.Nlink)
	}
	if a.Ino != b.Ino || a.Ino != st0.Ino {
		t.Errorf("inos %d %d (before %d)", a.Ino, b.Ino, st0.Ino)
	}
	if err := os.Remove(tu.m("g")); err != nil {
		t.Fatal(err)
	}
	if a := statT(t, tu.m("f")); a.Nlink != 1 {
		t.Errorf("nlink after unlink %d, want 1", a.Nlink)
	}
}

func TestXattrs(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "x"}, Options{})
	if err := unix.Lsetxattr(tu.b(1, "f"), "user.low", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	p := tu.m("f")
	buf := make([]byte, 256)
	if n, err := unix.Lgetxattr(p, "user.low", buf); err != nil || string(buf[:n]) != "1" {
		t.Fatalf("get lower xattr %q %v", buf[:n], err)
	}
	if err := unix.Lsetxattr(p, "user.new", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sortStrings(names)
	if !reflect.DeepEqual(names, []string{"user.low", "user.new"}) {
		t.Errorf("list = %v", names)
	}
	if err := unix.Lremovexattr(p, "user.low"); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Lgetxattr(p, "user.low", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("removed xattr: %v", err)
	}
	if _, err := unix.Lgetxattr(tu.b(1, "f"), "user.low", buf); err != nil {
		t.Errorf("lower lost its xattr: %v", err)
	}
}

// TestStatfsSum: with sum (aufs's option) statfs adds up the branches'
// file systems, each once however many branches it holds, and follows a
// branch added to the live stack; without it statfs is the rw branch's.
func TestStatfsSum(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	sizes := map[string]uint64{"a": 64 << 20, "b": 32 << 20, "c": 16 << 20}
	for name, size := range sizes {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, fmt.Sprintf("size=%d,nr_inodes=%d", size, size>>12)); err != nil {
			t.Fatalf("tmpfs for branch %s: %v", name, err)
		}
		t.Cleanup(func() { _ = unix.Unmount(d, unix.MNT_DETACH) })
	}
	bx, by, mnt := filepath.Join(dir, "b", "x"), filepath.Join(dir, "b", "y"), filepath.Join(dir, "mnt")
	for _, d := range []string{bx, by, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// bytes and inodes statfs reports for p
	space := func(p string) (uint64, uint64) {
		var s unix.Statfs_t
		if err := unix.Statfs(p, &s); err != nil {
			t.Fatalf("statfs %s: %v", p, err)
		}
		return s.Blocks * uint64(s.Frsize), s.Files
	}
	for _, sum := range []bool{false, true} {
		srv, err := Mount([]Branch{{filepath.Join(dir, "a"), RW}, {bx, RO}, {by, RR}}, mnt, Options{StatfsSum: sum})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Unmount() }) // a failed check leaves no mount (a no-op after the Unmount below)
		bytes, files := space(mnt)
		wantBytes, wantFiles := sizes["a"], sizes["a"]>>12
		if sum {
			wantBytes, wantFiles = sizes["a"]+sizes["b"], (sizes["a"]+sizes["b"])>>12
		}
		if bytes != wantBytes || files != wantFiles {
			t.Errorf("sum=%v: statfs %d bytes, %d inodes; want %d, %d", sum, bytes, files, wantBytes, wantFiles)
		}
		if err := srv.AddBranch(Branch{Path: filepath.Join(dir, "c"), Mode: RO}, 3); err != nil {
			t.Fatal(err)
		}
		if sum {
			wantBytes, wantFiles = wantBytes+sizes["c"], wantFiles+sizes["c"]>>12
		}
		if bytes, files := space(mnt); bytes != wantBytes || files != wantFiles {
			t.Errorf("sum=%v, branch c added: statfs %d bytes, %d inodes; want %d, %d", sum, bytes, files, wantBytes, wantFiles)
		}
		if err := srv.Unmount(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStatfsAndNames(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, nil, Options{})
	var s, rw unix.Statfs_t
	if err := unix.Statfs(tu.mnt, &s); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(tu.branches[0], &rw); err != nil {
		t.Fatal(err)
	}
	if s.Namelen != rw.Namelen-4 {
		t.Errorf("namelen %d, want %d", s.Namelen, rw.Namelen-4)
	}
	if s.Blocks != rw.Blocks || s.Bsize != rw.Bsize {
		t.Errorf("statfs blocks %d/%d, rw branch %d/%d", s.Blocks, s.Bsize, rw.Blocks, rw.Bsize)
	}
	long := strings.Repeat("n", int(s.Namelen))
	writeFile(t, tu.m(long), "ok")
	if err := os.WriteFile(tu.m(long+"x"), nil, 0644); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("create %d-char name: %v, want ENAMETOOLONG", len(long)+1, err)
	}
	for _, op := range []func(p string) error{
		func(p string) error { return os.WriteFile(p, nil, 0644) },
		func(p string) error { return os.Mkdir(p, 0755) },
		func(p string) error { return os.Symlink("x", p) },
		func(p string) error { return os.Rename(tu.m(long), p) },
	} {
		if err := op(tu.m(".wh.foo")); !errors.Is(err, syscall.EPERM) {
			t.Errorf("creating .wh.foo: %v, want EPERM", err)
		}
	}
	if got := listDir(t, tu.mnt); len(got) != 1 {
		t.Errorf("ls = %v", got)
	}
}

func TestMmapWriteVisibleToRead(t *testing.T) {
	for _, pt := range []bool{false, true} {
		tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": strings.Repeat("a", 8192)}, Options{Passthrough: pt})
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "UNIONFS_TEST_HELPER=mmap", "UNIONFS_TEST_PATH="+tu.m("f"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mmap writer: %v %s", err, out)
		}
		got := readFile(t, tu.m("f"))
		if got[4096:4103] != "mmapped" {
			t.Errorf("passthrough=%v: read after mmap write: %q", pt, got[4096:4103])
		}
		if readFile(t, tu.b(1, "f"))[4096] != 'a' {
			t.Errorf("lower changed")
		}
	}
}

func TestFallocateAndSeekHoles(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, nil, Options{})
	// A sparse lower file: data at 1 MiB only.
	lf, err := os.Create(tu.b(1, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lf.WriteAt([]byte("data"), 1<<20); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	f, err := os.Open(tu.m("sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
	if err != nil || off != 1<<20 {
		t.Errorf("SEEK_DATA = %d, %v; want %d", off, err, 1<<20)
	}
	off, err = unix.Seek(int(f.Fd()), 1<<20, unix.SEEK_HOLE)
	if err != nil || off != 1<<20+4 {
		t.Errorf("SEEK_HOLE = %d, %v; want %d", off, err, 1<<20+4)
	}
	w, err := os.OpenFile(tu.m("new"), os.O_CREATE|os.O_RDWR, 0644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := unix.Fallocate(int(w.Fd()), 0, 0, 1<<16); err != nil {
		t.Fatalf("fallocate: %v", err)
	}
	if st := statT(t, tu.m("new")); st.Size != 1<<16 || st.Blocks == 0 {
		t.Errorf("after fallocate size %d blocks %d", st.Size, st.Blocks)
	}
	// Copy-up keeps holes.
	if err := os.Truncate(tu.m("sparse"), 2<<20); err != nil {
		t.Fatal(err)
	}
	if st := statT(t, tu.b(0, "sparse")); st.Blocks > 64 {
		t.Errorf("copied-up sparse file uses %d blocks", st.Blocks)
	}
}

func TestODirect(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": strings.Repeat("z", 8192), "1:r": strings.Repeat("r", 8192)}, Options{Passthrough: true})
	// A read-only O_DIRECT open of a lower file, served by the daemon.
	rfd, err := unix.Open(tu.m("r"), unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	rmem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Pread(rfd, rmem, 4096); err != nil || n != 4096 || rmem[0] != 'r' {
		t.Errorf("O_DIRECT read of a lower file: %d %v", n, err)
	}
	unix.Munmap(rmem)
	unix.Close(rfd)
	fd, err := unix.Open(tu.m("f"), unix.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	mem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	copy(mem, strings.Repeat("D", 4096))
	if _, err := unix.Pwrite(fd, mem, 4096); err != nil {
		t.Fatalf("O_DIRECT write: %v", err)
	}
	clear(mem)
	if _, err := unix.Pread(fd, mem, 4096); err != nil || mem[0] != 'D' {
		t.Fatalf("O_DIRECT read: %v %q", err, mem[:4])
	}
	if got := readFile(t, tu.m("f")); got[:4096] != strings.Repeat("z", 4096) || got[4096] != 'D' {
		t.Errorf("content after O_DIRECT write wrong")
	}
}

func TestLowerChangeShowsAfterTimeout(t *testing.T) {
	to := 100 * time.Millisecond
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "one"}, Options{EntryTimeout: to, AttrTimeout: to, NegativeTimeout: to})
	mustNotExist(t, tu.m("g"))
	_ = readFile(t, tu.m("f"))
	writeFile(t, tu.b(1, "g"), "new")
	if err := os.Remove(tu.b(1, "f")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errG := os.Lstat(tu.m("g"))
		_, errF := os.Lstat(tu.m("f"))
		if errG == nil && os.IsNotExist(errF) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outside change never showed: g %v, f %v", errG, errF)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestZeroTimeoutCachesNothing: timeouts of 0 in a mount spec make every
// stat ask the daemon, so a lower change shows at once, not a jiffy later.
func TestZeroTimeoutCachesNothing(t *testing.T) {
	spec, err := ParseOptionsAt("dirs=/a:/b,entry_timeout=0,attr_timeout=0,negative_timeout=0", "/")
	if err != nil {
		t.Fatal(err)
	}
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": ""}, spec.Options)
	for i := range 100 {
		if err := os.Truncate(tu.b(1, "f"), int64(i+1)); err != nil {
			t.Fatal(err)
		}
		if st := statT(t, tu.m("f")); st.Size != int64(i+1) {
			t.Fatalf("round %d: size %d through the union right after a lower truncate to %d", i, st.Size, i+1)
		}
		name := fmt.Sprintf("n%d", i)
		mustNotExist(t, tu.m(name))
		writeFile(t, tu.b(1, name), "")
		if _, err := os.Lstat(tu.m(name)); err != nil {
			t.Fatalf("round %d: a name made in the lower branch right after a miss: %v", i, err)
		}
	}
}

func TestTmpfileLinkedIntoLowerDir(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:d/x": ""}, Options{Passthrough: true})
	fd, err := unix.Open(tu.m("d"), unix.O_TMPFILE|unix.O_RDWR, 0640)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte("tmp data")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+itoa(fd), unix.AT_FDCWD, tu.m("d/named"), unix.AT_SYMLINK_FOLLOW); err != nil {
		t.Fatalf("linkat: %v", err)
	}
	if got := readFile(t, tu.b(0, "d/named")); got != "tmp data" {
		t.Errorf("rw d/named = %q", got)
	}
	if got, want := listDir(t, tu.m("d")), []string{"named", "x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ls d = %v, want %v", got, want)
	}
}

// TestWhiteoutsAreLinksOfOneBase checks that whiteouts are hard links of
// one empty base file, as aufs makes them, hidden from the union; that
// a base removed from outside is made again; and that whiteouts of an
// earlier mount (whose base the remount's cleanup removed) still hide.
func TestWhiteoutsAreLinksOfOneBase(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:a": "x", "1:d/b": "x", "1:c": "x", "1:e": "x"}, Options{})
	for _, p := range []string{"a", "d/b"} {
		if err := os.Remove(tu.m(p)); err != nil {
			t.Fatal(err)
		}
	}
	var wa, wb syscall.Stat_t
	if err := syscall.Lstat(tu.b(0, ".wh.a"), &wa); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Lstat(tu.b(0, "d/.wh.b"), &wb); err != nil {
		t.Fatal(err)
	}
	if wa.Ino != wb.Ino || wa.Nlink < 3 || wa.Size != 0 || wa.Mode&syscall.S_IFMT != syscall.S_IFREG {
		t.Fatalf("whiteouts: inodes %d and %d, nlink %d, size %d, mode %o; want one empty regular file linked from the base and both", wa.Ino, wb.Ino, wa.Nlink, wa.Size, wa.Mode)
	}
	if got, want := listDir(t, tu.mnt), []string{"c", "d", "e"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls = %v, want %v", got, want)
	}
	if err := os.RemoveAll(tu.b(0, workName)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tu.m("c")); err != nil {
		t.Fatalf("unlink after the base was removed: %v", err)
	}
	mustExist(t, tu.b(0, ".wh.c"))
	srv := tu.srv
	tu.unmount(t)
	var err error
	tu.srv, err = Mount(srv.Branches(), tu.mnt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := listDir(t, tu.mnt), []string{"d", "e"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after remount: ls = %v, want %v", got, want)
	}
	if err := os.Remove(tu.m("e")); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, tu.m("e"))
}

// TestCreateExistingNameFails checks that every way of creating a name
// fails with EEXIST on a name the union shows: in a directory only the
// rw branch has (where the check is left to the exclusive create), in a
// merged one, and for a name only a lower branch has.
func TestCreateExistingNameFails(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{
		"1:merged/lowfile": "l",
		"1:merged/lowdir/": "",
	}, Options{})
	if err := os.MkdirAll(tu.m("fresh/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"fresh/file", "merged/file"} {
		if err := os.WriteFile(tu.m(p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(tu.m("merged/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	makers := nameMakers()
	makers["link"] = func(p string) error { return unix.Link(tu.m("fresh/file"), p) }
	for _, existing := range []string{"fresh/file", "fresh/dir", "merged/file", "merged/dir", "merged/lowfile", "merged/lowdir"} {
		for how, mk := range makers {
			if err := mk(tu.m(existing)); !errors.Is(err, unix.EEXIST) {
				t.Errorf("%s over existing %s: %v, want EEXIST", how, existing, err)
			}
		}
	}
	if got, want := listDir(t, tu.m("fresh")), []string{"dir", "file"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ls fresh = %v, want %v", got, want)
	}
	if b, err := os.ReadFile(tu.m("fresh/file")); err != nil || string(b) != "x" {
		t.Errorf("fresh/file = %q, %v; want it unchanged", b, err)
	}
}

// TestCreateOverNameMadeBehindTheCache checks that with hour-long
// caches a create still fails with EEXIST on a name that appeared in the
// rw branch from outside after the kernel cached it as missing (an empty
// directory, which a rename into place would silently replace, and a
// file). The kernel looks a cached missing name up again before an
// exclusive create, and the daemon must answer from the branch.
func TestCreateOverNameMadeBehindTheCache(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, nil, Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour, NegativeTimeout: time.Hour})
	if err := os.Mkdir(tu.m("fresh"), 0o755); err != nil {
		t.Fatal(err)
	}
	for how, mk := range nameMakers() {
		for _, kind := range []string{"dir", "file"} {
			name := "fresh/" + strings.ReplaceAll(how, " ", "-") + "-over-" + kind
			if _, err := os.Lstat(tu.m(name)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("lstat %s before: %v, want ENOENT", name, err)
			}
			var err error
			if kind == "dir" {
				err = os.Mkdir(tu.b(0, name), 0o755)
			} else {
				err = os.WriteFile(tu.b(0, name), []byte("outside"), 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := mk(tu.m(name)); !errors.Is(err, unix.EEXIST) {
				t.Errorf("%s over %s made behind the cache: %v, want EEXIST", how, kind, err)
			}
			if st, err := os.Lstat(tu.b(0, name)); err != nil || (kind == "dir") != st.IsDir() {
				t.Errorf("%s over %s: the branch entry is now %v, %v", how, kind, st, err)
			}
		}
	}
}

// TestOpenCreateOfNameMadeBehindTheCache: open(2) with O_CREAT but
// without O_EXCL of a name the kernel still holds absent, made since in
// a branch, opens that file, as open(2) must (it answered EEXIST, which
// open never does without O_EXCL), with an open's permission checks:
// nobody cannot so open a file only root may write. (With long timeouts
// the union, as udba=none, does not look at the read-only branches
// again: a lower file made from outside does not show there.)
func TestOpenCreateOfNameMadeBehindTheCache(t *testing.T) {
	for _, set := range []struct {
		name  string
		opts  Options
		lower bool
	}{
		{"reval", Options{}, true},
		{"long-timeouts", Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour, NegativeTimeout: time.Hour}, false},
	} {
		t.Run(set.name, func(t *testing.T) {
			tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:d/old": "", "0:e/": "", "0:w/": ""}, set.opts)
			if err := os.Chmod(tu.b(0, "w"), 0o777); err != nil {
				t.Fatal(err)
			}
			testenv.OpenTempDirs(t, tu.mnt)
			for _, name := range []string{"d/lower", "e/upper", "w/root-only", "w/for-all"} {
				if _, err := os.Lstat(tu.m(name)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("lstat %s before: %v, want ENOENT", name, err)
				}
			}
			writeFile(t, tu.b(1, "d/lower"), "outside lower")
			writeFile(t, tu.b(0, "e/upper"), "outside upper")
			if err := os.WriteFile(tu.b(0, "w/root-only"), []byte("root's"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(tu.b(0, "w/for-all"), []byte("all's\n"), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(tu.b(0, "w/for-all"), 0o666); err != nil { // past the umask
				t.Fatal(err)
			}
			for name, want := range map[string]string{"d/lower": "outside lower", "e/upper": "outside upper"} {
				if name == "d/lower" && !set.lower {
					continue
				}
				f, err := os.OpenFile(tu.m(name), os.O_RDWR|os.O_CREATE, 0o644)
				if err != nil {
					t.Errorf("open O_CREAT %s made behind the cache: %v", name, err)
					continue
				}
				got, err := io.ReadAll(f)
				f.Close()
				if err != nil || string(got) != want {
					t.Errorf("%s opened with O_CREAT reads %q, %v; want %q", name, got, err, want)
				}
			}
			if got := readFile(t, tu.b(1, "d/lower")); got != "outside lower" {
				t.Errorf("the lower file changed: %q", got)
			}
			// nobody reaches the directory: a file open to all it may
			// so open; one only root may write it may not.
			runAsNobody(t, "sh", "-c", "echo x >> "+tu.m("w/for-all"))
			if got := readFile(t, tu.b(0, "w/for-all")); got != "all's\nx\n" {
				t.Errorf("w/for-all = %q after nobody's append", got)
			}
			if _, err := asNobody("sh", "-c", "echo x >> "+tu.m("w/root-only")); !errors.Is(err, syscall.EACCES) {
				t.Errorf("nobody appending with O_CREAT to a 0600 root file made behind the cache: %v, want EACCES", err)
			}
			if got := readFile(t, tu.b(0, "w/root-only")); got != "root's" {
				t.Errorf("w/root-only = %q after nobody's attempt", got)
			}
		})
	}
}

// TestCopyUpOntoDirMadeBehindTheCache: a directory the rw branch got
// from outside after the union looked up its lower one is taken as its
// copy when something is made in it (the copy-up's rename onto it failed
// with ENOTEMPTY).
func TestCopyUpOntoDirMadeBehindTheCache(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:d/old": "old"}, Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour, NegativeTimeout: time.Hour})
	mustExist(t, tu.m("d/old"))
	if err := os.Mkdir(tu.b(0, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tu.b(0, "d/outside"), "outside")
	writeFile(t, tu.m("d/new"), "new")
	for name, want := range map[string]string{"d/new": "new", "d/outside": "outside"} {
		if got := readFile(t, tu.b(0, name)); got != want {
			t.Errorf("rw branch %s = %q, want %q", name, got, want)
		}
	}
	if got := readFile(t, tu.m("d/old")); got != "old" {
		t.Errorf("d/old = %q", got)
	}
}

// nameMakers are the ways of creating a new name, by what they call.
func nameMakers() map[string]func(p string) error {
	return map[string]func(p string) error{
		"open O_EXCL": func(p string) error {
			fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
			if err == nil {
				unix.Close(fd)
			}
			return err
		},
		"mkdir":   func(p string) error { return unix.Mkdir(p, 0o755) },
		"mkfifo":  func(p string) error { return unix.Mkfifo(p, 0o644) },
		"symlink": func(p string) error { return unix.Symlink("target", p) },
	}
}
