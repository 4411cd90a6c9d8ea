package unionfs

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

// The model test runs random sequences of namespace and content changes
// through a union and, side by side, on a plain directory that starts as
// a copy of the union's merged tree. A union is right when it cannot be
// told from that directory: every operation returns the same error (or
// none), and the trees (names, types, permissions, link counts, contents,
// symlink targets) stay the same, also after the union is mounted anew
// from its branches, whose whiteouts and opaque markers then carry every
// removal. The read-only branches must end as they began.

// modelFiles is the starting stack: rw (empty) over two read-only
// branches that share directories, with a whiteout and an opaque
// directory in the middle one.
var modelFiles = map[string]string{
	"1:a/x":            "a/x of the middle branch",
	"1:a/b/y":          "a/b/y",
	"1:a/.wh.gone":     "",
	"1:o/.wh..wh..opq": "",
	"1:o/kept":         "kept in the opaque dir",
	"1:c/":             "",
	"2:a/x":            "a/x of the bottom branch, hidden",
	"2:a/gone":         "whited out",
	"2:a/z":            "a/z of the bottom branch",
	"2:a/b/deep/w":     "a/b/deep/w",
	"2:o/hidden":       "below the opaque dir",
	"2:top":            "a file at the root",
	"2:d/e/f":          "a deeper tree only in the bottom branch",
}

// modelLinks are hard links of the read-only branches, made before the
// first look at the union: groups with names in more than one directory,
// all of them shown by the union.
var modelLinks = []struct {
	branch     int
	name, link string
}{
	{2, "d/e/f", "a/n1"},
	{2, "top", "d/n2"},
	{1, "a/b/y", "o/y"},
}

// modelNames are the names random paths are made of: few, so operations
// meet existing names often.
var modelNames = []string{"x", "y", "z", "b", "e", "f", "n1", "n2", "gone", "kept"}

// modelOp is one change, applied the same way to both trees.
type modelOp struct {
	kind     string
	a, b     string // paths relative to the root (b: rename or link target, symlink text)
	data     string
	mode     uint32
	size     int64
	uid, gid int // chown
}

func (o modelOp) String() string {
	switch o.kind {
	case "rename", "link", "symlink":
		return fmt.Sprintf("%s %s %s", o.kind, o.a, o.b)
	case "rename-noreplace":
		return fmt.Sprintf("rename (noreplace) %s %s", o.a, o.b)
	case "rename-exchange":
		return fmt.Sprintf("rename (exchange) %s %s", o.a, o.b)
	case "chmod":
		return fmt.Sprintf("chmod %o %s", o.mode, o.a)
	case "chown":
		return fmt.Sprintf("chown %d:%d %s", o.uid, o.gid, o.a)
	case "setacl":
		return fmt.Sprintf("setacl %s % x", o.a, o.data)
	case "setxattr":
		return fmt.Sprintf("setxattr %s %s=%q", o.a, o.b, o.data)
	case "removexattr":
		return fmt.Sprintf("removexattr %s %s", o.a, o.b)
	case "truncate":
		return fmt.Sprintf("truncate %s %d", o.a, o.size)
	case "create", "append", "overwrite":
		return fmt.Sprintf("%s %s (%d bytes)", o.kind, o.a, len(o.data))
	}
	return o.kind + " " + o.a
}

// apply makes the change under root and returns its errno (0: done).
func (o modelOp) apply(root string) unix.Errno {
	a, b := filepath.Join(root, o.a), filepath.Join(root, o.b)
	var err error
	switch o.kind {
	case "create", "append", "overwrite":
		flags := map[string]int{
			"create":    unix.O_CREAT | unix.O_EXCL | unix.O_WRONLY,
			"append":    unix.O_WRONLY | unix.O_APPEND,
			"overwrite": unix.O_WRONLY,
		}[o.kind]
		var fd int
		// O_NONBLOCK: a fifo without a reader fails (ENXIO) instead of
		// waiting for one; regular files ignore it.
		fd, err = unix.Open(a, flags|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o644)
		if err == nil {
			_, err = unix.Write(fd, []byte(o.data))
			unix.Close(fd)
		}
	case "truncate":
		err = unix.Truncate(a, o.size)
	case "unlink":
		err = unix.Unlink(a)
	case "mkdir":
		err = unix.Mkdir(a, 0o755)
	case "rmdir":
		err = unix.Rmdir(a)
	case "rename":
		err = unix.Rename(a, b)
	case "rename-noreplace":
		err = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_NOREPLACE)
	case "rename-exchange":
		err = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	case "mkfifo":
		err = unix.Mkfifo(a, 0o640)
	case "setxattr":
		err = unix.Lsetxattr(a, o.b, []byte(o.data), 0)
	case "removexattr":
		err = unix.Lremovexattr(a, o.b)
	case "link":
		err = unix.Link(a, b)
	case "symlink":
		err = unix.Symlink(o.b, a)
	case "chmod":
		err = unix.Chmod(a, o.mode)
	case "chown":
		err = unix.Lchown(a, o.uid, o.gid)
	case "setacl":
		err = unix.Setxattr(a, "system.posix_acl_access", []byte(o.data), 0)
	default:
		panic("unknown model op " + o.kind)
	}
	if err == nil {
		return 0
	}
	var errno unix.Errno
	if !errors.As(err, &errno) {
		panic(fmt.Sprintf("%v: %v is no errno", o, err))
	}
	return errno
}

// modelGen makes random operations on paths the reference tree has, or
// could have.
type modelGen struct {
	r   *rand.Rand
	ref string
}

// paths lists the reference tree: every path, and its directories.
func (g *modelGen) paths() (all, dirs []string) {
	dirs = []string{""}
	_ = filepath.WalkDir(g.ref, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == g.ref {
			return nil
		}
		rel, _ := filepath.Rel(g.ref, p)
		all = append(all, rel)
		if d.IsDir() {
			dirs = append(dirs, rel)
		}
		return nil
	})
	return all, dirs
}

// path picks an existing path two times in three, else a new name in an
// existing directory (or, rarely, under a file or a missing directory).
func (g *modelGen) path(all, dirs []string) string {
	if len(all) > 0 && g.r.IntN(3) > 0 {
		return all[g.r.IntN(len(all))]
	}
	dir := dirs[g.r.IntN(len(dirs))]
	if g.r.IntN(20) == 0 && len(all) > 0 {
		dir = all[g.r.IntN(len(all))] // maybe a file: ENOTDIR
	}
	return filepath.Join(dir, modelNames[g.r.IntN(len(modelNames))])
}

func (g *modelGen) next() modelOp {
	all, dirs := g.paths()
	kinds := []string{"create", "create", "append", "overwrite", "truncate", "unlink", "unlink",
		"mkdir", "rmdir", "rmdir", "rename", "rename", "rename", "rename-noreplace", "rename-exchange", "link", "symlink",
		"mkfifo", "chmod", "chown", "setacl", "setxattr", "removexattr"}
	o := modelOp{kind: kinds[g.r.IntN(len(kinds))], a: g.path(all, dirs)}
	switch o.kind {
	case "create", "append", "overwrite":
		o.data = strings.Repeat(strconv.Itoa(g.r.IntN(10)), 1+g.r.IntN(300))
	case "truncate":
		o.size = int64(g.r.IntN(100))
	case "rename", "rename-noreplace", "rename-exchange", "link":
		o.b = g.path(all, dirs)
		if o.kind != "link" && g.r.IntN(4) == 0 && len(dirs) > 1 {
			// A directory moved, maybe into itself (EINVAL) or over
			// another one.
			o.a = dirs[1+g.r.IntN(len(dirs)-1)]
		}
	case "symlink":
		o.b = modelNames[g.r.IntN(len(modelNames))]
	case "chmod":
		o.mode = []uint32{0o600, 0o644, 0o755, 0o700, 0o444, 0o2777, 0o1777}[g.r.IntN(7)]
	case "setacl":
		o.data = string(aclNobody([]uint16{0, 4, 6}[g.r.IntN(3)], []uint16{0, 4}[g.r.IntN(2)]))
	case "chown":
		o.uid = []int{-1, 0, nobody}[g.r.IntN(3)]
		o.gid = []int{-1, 0, nobody, 100}[g.r.IntN(4)]
	case "setxattr", "removexattr":
		o.b = []string{"user.k1", "user.k2"}[g.r.IntN(2)]
		o.data = strconv.Itoa(g.r.IntN(1000))
	}
	return o
}

// modelTree describes every entry below root: type, permissions, link
// count of non-directories, and content or target, and the other names
// with its inode number (so a union that gave two files one number, or
// one file two, differs from the plain tree).
func modelTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	byIno := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		perm := st.Mode & 0o7777
		owner := fmt.Sprintf("%d:%d", st.Uid, st.Gid)
		xattrs := modelXattrs(p)
		byIno[st.Ino] = append(byIno[st.Ino], rel)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			out[rel] = fmt.Sprintf("dir %o %s%s", perm, owner, xattrs)
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("symlink %s -> %s", owner, target)
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %o %s nlink %d size %d sha %x%s", perm, owner, st.Nlink, st.Size, sha256.Sum256(data), xattrs)
		default:
			out[rel] = fmt.Sprintf("type %o %o %s nlink %d", st.Mode&unix.S_IFMT, perm, owner, st.Nlink)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	for _, names := range byIno {
		if len(names) > 1 {
			sort.Strings(names)
			for _, rel := range names {
				out[rel] += " same inode as " + strings.Join(names, ",")
			}
		}
	}
	return out
}

// modelXattrs describes the user.* extended attributes of p, and its
// access ACL.
func modelXattrs(p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return " xattrs: " + err.Error()
	}
	var parts []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") && name != "system.posix_acl_access" {
			continue
		}
		v := make([]byte, 256)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			parts = append(parts, name+": "+err.Error())
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%q", name, v[:m]))
	}
	if len(parts) == 0 {
		return ""
	}
	sort.Strings(parts)
	return " " + strings.Join(parts, " ")
}

// treeDiff lists the paths whose description differs.
func treeDiff(want, got map[string]string) []string {
	var diffs []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: missing (want %s)", p, w))
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s: %s, want %s", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: unexpected %s", p, g))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// modelOptionSets are the mount options the model runs under: the
// defaults (udba=notify, as root), short caches (udba=reval), long
// caches, watched branches with lower files passed through, and no
// passthrough.
var modelOptionSets = []string{"", "udba=reval", "udba=none", "udba=notify,passthrough=all", "passthrough=off"}

// TestModelRandomOps: see the comment at the top of this file. Each set
// of options and seed is a subtest, run by root and again by nobody
// (see runModel); UNIONFS_MODEL_SEEDS=N runs N seeds
// instead of 4, and UNIONFS_MODEL_SEED=S only seed S.
func TestModelRandomOps(t *testing.T) {
	needFUSE(t)
	seeds := []uint64{1, 2, 3, 4}
	if n, err := strconv.Atoi(os.Getenv("UNIONFS_MODEL_SEEDS")); err == nil && n > 0 {
		seeds = nil
		for i := range n {
			seeds = append(seeds, uint64(i+1))
		}
	}
	if s, err := strconv.ParseUint(os.Getenv("UNIONFS_MODEL_SEED"), 10, 64); err == nil {
		seeds = []uint64{s}
	}
	for _, set := range append(modelOptionSets, rwOnTmpfs) {
		opts := modelOptions(t, strings.TrimSuffix(set, rwOnTmpfs))
		name := set
		if name == "" {
			name = "defaults"
		}
		t.Run(name, func(t *testing.T) {
			for _, seed := range seeds {
				t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) { runModel(t, seed, 300, opts, false, set == rwOnTmpfs) })
				t.Run(fmt.Sprintf("seed%d-as-nobody", seed), func(t *testing.T) { runModel(t, seed, 300, opts, true, set == rwOnTmpfs) })
			}
		})
	}
}

// rwOnTmpfs names the model run with the defaults whose rw branch is a
// tmpfs: branches on two file systems, so the union numbers files itself
// (see inoMap).
const rwOnTmpfs = "rw-on-tmpfs"

// modelOptions returns the Options `unionctl mount -o set` mounts with.
func modelOptions(t *testing.T, set string) Options {
	t.Helper()
	dirs := t.TempDir()
	for _, d := range []string{"rw", "ro"} {
		if err := os.Mkdir(filepath.Join(dirs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spec, err := ParseOptions("dirs=" + filepath.Join(dirs, "rw") + ":" + filepath.Join(dirs, "ro") + "," + set)
	if err != nil {
		t.Fatalf("options %q: %v", set, err)
	}
	return spec.Options
}

// runModel runs steps random operations with the given seed on a union
// mounted with opts. asNobody makes nobody the caller of every
// operation (on a thread with nobody's file system ids), in a tree where
// nobody owns c and d, may write in o (sticky, set-group-ID) and may
// only read a: the union
// must grant and refuse as the plain tree does, and give what nobody
// makes nobody's owner.
func runModel(t *testing.T, seed uint64, steps int, opts Options, asNobody, tmpfsRW bool) {
	tu := mountUnion(t, []Mode{RW, RO, RO}, modelFiles, opts)
	if tmpfsRW {
		tu.unmount(t)
		if err := unix.Mount("tmpfs", tu.branches[0], "tmpfs", 0, "size=64m,mode=755"); err != nil {
			t.Fatalf("tmpfs for the rw branch: %v", err)
		}
		t.Cleanup(func() {
			tu.unmount(t) // the union first, then its branch
			_ = unix.Unmount(tu.branches[0], unix.MNT_DETACH)
		})
		tu.remount(t)
	}
	for _, l := range modelLinks {
		if err := os.Link(tu.b(l.branch, l.name), tu.b(l.branch, l.link)); err != nil {
			t.Fatal(err)
		}
	}
	apply := modelOp.apply
	if asNobody {
		for _, b := range tu.branches {
			shareModelTree(t, b)
		}
		testenv.OpenTempDirs(t, tu.mnt)
		apply = nobodyApplier(t)
	}
	ref := filepath.Join(t.TempDir(), "ref")
	if out, err := exec.Command("cp", "-a", tu.mnt+"/.", ref).CombinedOutput(); err != nil {
		t.Fatalf("copy the merged tree: %v %s", err, out)
	}
	if asNobody {
		testenv.OpenTempDirs(t, ref)
	}
	lowers := map[int]map[string]string{1: modelTree(t, tu.branches[1]), 2: modelTree(t, tu.branches[2])}
	var done []string // the steps so far, for messages
	check := func(when string) {
		t.Helper()
		if d := treeDiff(modelTree(t, ref), modelTree(t, tu.mnt)); len(d) > 0 {
			t.Fatalf("seed %d, %s: the union differs from the plain tree:\n%s\nsteps:\n%s", seed, when, strings.Join(d[:min(len(d), 20)], "\n"), strings.Join(done, "\n"))
		}
	}
	check("at the start")
	g := &modelGen{r: rand.New(rand.NewPCG(seed, 0x756e696f6e)), ref: ref}
	for i := range steps {
		o := g.next()
		want, got := apply(o, ref), apply(o, tu.mnt)
		done = append(done, fmt.Sprintf("%d: %v -> %v", i, o, want))
		if want != got {
			t.Fatalf("seed %d, step %d: %v: union says %v, plain tree %v; steps:\n%s", seed, i, o, errnoName(got), errnoName(want), strings.Join(done, "\n"))
		}
		if i%20 == 19 {
			check(fmt.Sprintf("after step %d (%v)", i, o))
		}
	}
	check("at the end")

	// Mounted anew, the union shows the same tree from its branches.
	tu.unmount(t)
	tu.remount(t)
	check("mounted again")
	for i, want := range lowers {
		if d := treeDiff(want, modelTree(t, tu.branches[i])); len(d) > 0 {
			t.Errorf("seed %d: read-only branch %d changed:\n%s", seed, i, strings.Join(d, "\n"))
		}
	}
	if names := whiteoutNames(t, tu.mnt); len(names) > 0 {
		t.Errorf("seed %d: the union lists %v", seed, names)
	}
}

// shareModelTree gives nobody the c and d trees of branch b and makes
// its o directories writable by all, sticky and set-group-ID (so what
// nobody makes there is in root's group); a stays root's.
func shareModelTree(t *testing.T, b string) {
	t.Helper()
	for _, top := range []string{"c", "d"} {
		err := filepath.WalkDir(filepath.Join(b, top), func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return unix.Lchown(p, nobody, nobody)
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if err := unix.Chmod(filepath.Join(b, "o"), 0o3777); err != nil && !errors.Is(err, unix.ENOENT) {
		t.Fatal(err)
	}
}

// nobodyApplier returns an apply that makes each change on one thread
// whose file system ids are nobody's; the thread ends with the test.
func nobodyApplier(t *testing.T) func(modelOp, string) unix.Errno {
	type job struct {
		o    modelOp
		root string
	}
	jobs, results := make(chan job), make(chan unix.Errno)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with nobody's ids
		unix.Setfsgid(nobody)
		unix.Setfsuid(nobody)
		for j := range jobs {
			results <- j.o.apply(j.root)
		}
	}()
	t.Cleanup(func() { close(jobs) })
	return func(o modelOp, root string) unix.Errno {
		jobs <- job{o, root}
		return <-results
	}
}

// whiteoutNames lists the .wh. names a walk of root sees.
func whiteoutNames(t *testing.T, root string) []string {
	var names []string
	for p := range modelTree(t, root) {
		if strings.HasPrefix(filepath.Base(p), whPrefix) {
			names = append(names, p)
		}
	}
	return slices.Sorted(slices.Values(names))
}

// errnoName names an errno for messages ("OK" for none).
func errnoName(e unix.Errno) string {
	if e == 0 {
		return "OK"
	}
	return unix.ErrnoName(e)
}
