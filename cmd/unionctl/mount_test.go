package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/internal/testenv"
	"github.com/unionstack/unionstack/unionfs"
)

// The test binary stands in for unionctl: run under one of unionctl's
// names (through a symlink) it is the CLI, the mount helper and the
// re-executed mount daemon. Test files' init runs after the package's, so
// every command is registered by now.
func init() {
	switch filepath.Base(os.Args[0]) {
	case "unionctl", "fuse3.unionctl", "fuse.unionctl", "mount.fuse3.unionctl":
		os.Exit(run(os.Args))
	}
}

// mountTestBin returns a directory holding unionctl (and fuse3.unionctl)
// as symlinks to this test binary.
func mountTestBin(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"unionctl", "fuse3.unionctl"} {
		if err := os.Symlink(exe, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// mountEnv is a scratch directory with the aufs walkthrough's branches:
// company holds code, eat and meeting; home holds sleep; mnt is empty.
type mountEnv struct {
	t   *testing.T
	dir string // cwd of the commands
	bin string // directory holding the unionctl symlink
	mnt string
}

// newMountEnv makes the branches and registers cleanup of any mount left.
func newMountEnv(t *testing.T) *mountEnv {
	t.Helper()
	testenv.NeedRoot(t)
	_, err := os.Stat("/dev/fuse")
	testenv.Need(t, err == nil, "/dev/fuse missing (no FUSE)")
	e := &mountEnv{t: t, dir: t.TempDir(), bin: mountTestBin(t)}
	e.mnt = filepath.Join(e.dir, "mnt")
	for _, d := range []string{"home", "company", "mnt", "extra"} {
		if err := os.Mkdir(filepath.Join(e.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"company/code", "company/eat", "company/meeting", "home/sleep", "extra/bonus"} {
		if err := os.WriteFile(filepath.Join(e.dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { mountCleanup(t, e.mnt) })
	return e
}

// mountCleanup ends whatever is mounted at mnt and its daemon.
func mountCleanup(t *testing.T, mnt string) {
	pid := unionfs.DaemonPid(mnt)
	if unionfs.IsMounted(mnt) {
		if err := unionfs.Umount(mnt); err != nil {
			t.Logf("cleanup: umount %s: %v", mnt, err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	}
	if pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = unionfs.Umount(mnt) // drops stale state
}

// unionctl runs the unionctl stand-in in e.dir and returns its output and
// exit code.
func (e *mountEnv) unionctl(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.run(filepath.Join(e.bin, "unionctl"), args...)
}

// run runs a program in e.dir.
func (e *mountEnv) run(prog string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Dir = e.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		e.t.Fatalf("run %s %q: %v", prog, args, err)
	}
	return out.String(), errb.String(), code
}

// mustUnionctl runs unionctl and fails unless it exits 0.
func (e *mountEnv) mustUnionctl(args ...string) string {
	e.t.Helper()
	out, errs, code := e.unionctl(args...)
	if code != 0 {
		e.t.Fatalf("unionctl %s: exit %d: %s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// ls lists a directory, sorted.
func (e *mountEnv) ls(dir string) string {
	e.t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		e.t.Fatalf("ls %s: %v", dir, err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// read returns a file's content relative to e.dir.
func (e *mountEnv) read(rel string) string {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.dir, rel))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(data)
}

// waitGone waits for process pid to exit.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive says whether pid runs (zombies count as gone).
func processAlive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i < 0 || i+2 >= len(data) || data[i+2] != 'Z'
}

// assertUnmounted checks that nothing is mounted at mnt and no daemon
// state is left.
func (e *mountEnv) assertUnmounted() {
	e.t.Helper()
	// A daemon whose mount went by umount(8) exits by itself, soon.
	deadline := time.Now().Add(30 * time.Second)
	for unionfs.DaemonPid(e.mnt) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if unionfs.IsMounted(e.mnt) {
		e.t.Errorf("%s is still mounted", e.mnt)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mi, []byte(" "+e.mnt+" ")) {
		e.t.Errorf("%s still in the mount table", e.mnt)
	}
	if pid := unionfs.DaemonPid(e.mnt); pid != 0 {
		e.t.Errorf("daemon %d still recorded for %s", pid, e.mnt)
	}
	if _, err := os.Stat(unionfs.StateDir(e.mnt)); !errors.Is(err, os.ErrNotExist) {
		e.t.Errorf("state dir %s left behind: %v", unionfs.StateDir(e.mnt), err)
	}
}

// TestMountWalkthrough is the aufs walkthrough through the CLI: mount,
// ls, copy-up on write, umount.
func TestMountWalkthrough(t *testing.T) {
	e := newMountEnv(t)
	e.mustUnionctl("mount", "dirs=./home:./company", "./mnt")
	if !unionfs.IsMounted(e.mnt) {
		t.Fatal("not mounted after unionctl mount returned")
	}
	pid := unionfs.DaemonPid(e.mnt)
	if pid == 0 {
		t.Fatal("no daemon recorded")
	}
	if got := e.ls(e.mnt); got != "code eat meeting sleep" {
		t.Errorf("ls mnt = %q; want code eat meeting sleep", got)
	}
	if err := os.WriteFile(filepath.Join(e.mnt, "code"), []byte("apple\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := e.read("company/code"); got != "" {
		t.Errorf("company/code = %q; want it empty", got)
	}
	if got := e.read("home/code"); got != "apple\n" {
		t.Errorf("home/code = %q; want apple", got)
	}
	if out := e.mustUnionctl("branch", "ls", "./mnt"); !strings.Contains(out, filepath.Join(e.dir, "home")) {
		t.Errorf("branch ls = %q", out)
	}
	e.mustUnionctl("umount", "./mnt")
	waitGone(t, pid)
	e.assertUnmounted()
	if got := e.ls(e.mnt); got != "" {
		t.Errorf("mnt after umount = %q; want empty", got)
	}
}

// TestMountModesAreTheCallers: a file, directory or fifo made through
// the union gets the mode its maker asked for less the maker's umask,
// whatever umask the daemon was started with.
func TestMountModesAreTheCallers(t *testing.T) {
	e := newMountEnv(t)
	old := unix.Umask(0o022) // the daemon starts with it
	defer unix.Umask(old)
	e.mustUnionctl("mount", "dirs=./home:./company", "./mnt")
	for _, c := range []struct {
		name      string
		umask     int
		file, dir uint32 // the modes wanted for 0666 (files, fifos) and 0777
	}{
		{"open", 0, 0o666, 0o777},
		{"group", 0o027, 0o640, 0o750},
	} {
		unix.Umask(c.umask)
		f := filepath.Join(e.mnt, c.name+"-file")
		if err := os.WriteFile(f, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(e.mnt, c.name+"-dir")
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(e.mnt, c.name+"-fifo")
		if err := unix.Mkfifo(p, 0o666); err != nil {
			t.Fatal(err)
		}
		unix.Umask(0o022)
		for path, want := range map[string]uint32{f: c.file, d: c.dir, p: c.file} {
			for _, q := range []string{path, filepath.Join(e.dir, "home", filepath.Base(path))} {
				var st unix.Stat_t
				if err := unix.Lstat(q, &st); err != nil {
					t.Fatal(err)
				}
				if got := st.Mode & 0o7777; got != want {
					t.Errorf("umask %03o: %s has mode %04o, want %04o", c.umask, q, got, want)
				}
			}
		}
	}
}

// TestMountOptionsForm gives the branches inside -o, with other options,
// and mounts a read-only union of ro branches.
func TestMountOptionsForm(t *testing.T) {
	e := newMountEnv(t)
	e.mustUnionctl("mount", "-o", "dirs=./home=ro:./company=rr,udba=notify", "./mnt")
	if got := e.ls(e.mnt); got != "code eat meeting sleep" {
		t.Errorf("ls mnt = %q", got)
	}
	err := os.WriteFile(filepath.Join(e.mnt, "new"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("write to an all-ro union: %v; want EROFS", err)
	}
	e.mustUnionctl("umount", e.mnt)
	e.assertUnmounted()

	// The ro option makes a read-only union of an rw top branch.
	e.mustUnionctl("mount", "-o", "ro,noexec", "dirs=./home:./company", "./mnt")
	err = os.WriteFile(filepath.Join(e.mnt, "code"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("write to a union mounted ro: %v; want EROFS", err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(e.mnt, &sfs); err != nil || sfs.Flags&unix.ST_RDONLY == 0 || sfs.Flags&unix.ST_NOEXEC == 0 {
		t.Errorf("statfs flags %#x, %v; want ro and noexec", sfs.Flags, err)
	}
	e.mustUnionctl("umount", e.mnt)
	e.assertUnmounted()
}

// TestMountAufsLine: the options aufs was mounted with carry over with
// the type changed: the data Docker's aufs driver passed (br:, ro+wh,
// dio, xino=, dirperm1) and the other aufs options this union meets as
// it is mount the classic example, whose write lands in the rw branch.
func TestMountAufsLine(t *testing.T) {
	e := newMountEnv(t)
	docker := "br:" + filepath.Join(e.dir, "home") + "=rw:" + filepath.Join(e.dir, "company") + "=ro+wh,dio,xino=/dev/shm/aufs.xino,dirperm1"
	more := "udba=reval,create=tdp,cpup=tdp,plink,noxino,trunc_xino,rdcache=10,rdblk=def,rdhash=def,dirwh=3,diropq=w,warn_perm,nosum,noshwh,acl"
	for _, opts := range []string{docker, "dirs=./home:./company," + more} {
		_, errs, code := e.unionctl("none", "./mnt", "-o", opts)
		if code != 0 {
			t.Fatalf("mount -o %s: exit %d: %s", opts, code, errs)
		}
		if got := e.ls(e.mnt); got != "code eat meeting sleep" {
			t.Errorf("-o %s: ls mnt = %q", opts, got)
		}
		if err := os.WriteFile(filepath.Join(e.mnt, "code"), []byte("apple\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, lower := e.read("home/code"), e.read("company/code"); got != "apple\n" || lower != "" {
			t.Errorf("-o %s: home/code = %q, company/code = %q; want apple and empty", opts, got, lower)
		}
		if err := os.Remove(filepath.Join(e.dir, "home", "code")); err != nil {
			t.Fatal(err)
		}
		e.mustUnionctl("umount", e.mnt)
		e.assertUnmounted()
	}
}

// TestMountSuidAndDev: a union mounted by root runs a set-user-ID
// program with its owner's rights and opens device nodes, as any root
// mount does; nosuid and nodev take both away.
func TestMountSuidAndDev(t *testing.T) {
	e := newMountEnv(t)
	idPath, err := exec.LookPath("id")
	testenv.Need(t, err == nil, "the id program (coreutils)")
	prog, err := os.ReadFile(idPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "company", "suid-id"), prog, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(e.dir, "company", "suid-id"), 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(e.dir, "company", "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	testenv.OpenTempDirs(t, e.dir)
	euidAsNobody := func() string {
		cmd := exec.Command(filepath.Join(e.mnt, "suid-id"), "-u")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("run the set-user-ID program as nobody: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	for _, c := range []struct {
		opts       []string
		euid       string
		nullOpens  bool
		statfsFlag int64
	}{
		{nil, "0", true, 0},
		{[]string{"-o", "nosuid,nodev"}, "65534", false, unix.ST_NOSUID | unix.ST_NODEV},
	} {
		e.mustUnionctl(append(append([]string{"mount"}, c.opts...), "dirs=./home:./company", "./mnt")...)
		var sfs unix.Statfs_t
		if err := unix.Statfs(e.mnt, &sfs); err != nil || sfs.Flags&(unix.ST_NOSUID|unix.ST_NODEV) != c.statfsFlag {
			t.Errorf("%v: statfs flags %#x, %v; want nosuid|nodev %#x", c.opts, sfs.Flags, err, c.statfsFlag)
		}
		if got := euidAsNobody(); got != c.euid {
			t.Errorf("%v: the set-user-ID program runs as %s, want %s", c.opts, got, c.euid)
		}
		f, err := os.Open(filepath.Join(e.mnt, "null"))
		if err == nil {
			f.Close()
		}
		if (err == nil) != c.nullOpens {
			t.Errorf("%v: open a device node: %v", c.opts, err)
		}
		e.mustUnionctl("umount", e.mnt)
		e.assertUnmounted()
	}
}

// TestMountHelperForm runs the mount-helper argv form directly and through
// mount(8): "mount -t fuse3.unionctl -o dirs=... none ./mnt" and an
// fstab line via "mount -T FSTAB MOUNTPOINT". mount(8) clears PATH, and
// mount.fuse3 (libfuse 3.14) runs the program "fuse3.unionctl" through
// /bin/sh's default PATH, so the test binds its bin dir over
// /usr/local/sbin in a private mount namespace.
func TestMountHelperForm(t *testing.T) {
	e := newMountEnv(t)
	// The argv mount.fuse3 uses, relative paths against the cwd.
	_, errs, code := e.unionctl("none", "./mnt", "-o", "rw,dirs=./home:./company,dev,suid")
	if code != 0 {
		t.Fatalf("helper form: exit %d: %s", code, errs)
	}
	if got := e.ls(e.mnt); got != "code eat meeting sleep" {
		t.Errorf("ls mnt = %q", got)
	}
	e.mustUnionctl("umount", e.mnt)
	e.assertUnmounted()

	_, errs, code = e.unionctl("none", "./mnt", "-o", "dirs=./home:./nope")
	if code != 2 || !strings.Contains(errs, "nope: no such directory") {
		t.Errorf("helper form with a missing branch: exit %d: %s", code, errs)
	}
	e.assertUnmounted()

	testenv.NeedCommand(t, "unshare")
	testenv.NeedCommand(t, "mount.fuse3")
	fstab := filepath.Join(e.dir, "fstab")
	line := "none " + e.mnt + " fuse3.unionctl dirs=" + filepath.Join(e.dir, "home") + ":" + filepath.Join(e.dir, "company") + ",noauto,nofail,_netdev 0 0\n"
	if err := os.WriteFile(fstab, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `mount -t fuse3.unionctl -o dirs=./home:./company none ./mnt
ls mnt
echo apple > mnt/code
umount ./mnt
echo --
mount -T ./fstab "$MNT"
ls mnt
umount "$MNT"
echo --
if mount -t fuse3.unionctl -o dirs=./home:./home none ./mnt; then echo mounted a bad spec; fi
`
	out := e.mountScript(script)
	want := "code\neat\nmeeting\nsleep\n--\ncode\neat\nmeeting\nsleep\n--\n"
	if !strings.HasPrefix(out, want) || !strings.Contains(out, "given twice") || strings.Contains(out, "mounted a bad spec") {
		t.Errorf("mount(8) output:\n%s\nwant it to start with\n%s and name the duplicate branch", out, want)
	}
	if got := e.read("home/code"); got != "apple\n" {
		t.Errorf("home/code = %q; want apple", got)
	}
	e.assertUnmounted()
}

// mountScript runs script (sh, stopping at the first failing command)
// in a mount namespace of its own where this unionctl is the mount
// helper mount(8) finds (on /usr/local/sbin), in e.dir with $MNT the
// mountpoint, and returns its output.
func (e *mountEnv) mountScript(script string) string {
	e.t.Helper()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		"set -e\nmount --bind \"$BIN\" /usr/local/sbin\n"+script)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "BIN="+e.bin, "MNT="+e.mnt)
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("mount(8) in a namespace: %v\n%s", err, out)
	}
	return string(out)
}

// TestMountRemount: mount(8)'s remount of a live union edits its stack
// as aufs's remount did (append:DIR, mod:DIR=MODE, del:DIR: a whiteout
// of an ro branch hides a name below it, of an rr one not) and sets the
// mount's flags (ro, rw); the rw branch stays rw and says so.
func TestMountRemount(t *testing.T) {
	e := newMountEnv(t)
	testenv.NeedCommand(t, "unshare")
	testenv.NeedCommand(t, "mount.fuse3")
	script := `trap 'umount "$MNT" 2>/dev/null || true' EXIT
mount -t fuse3.unionctl -o dirs=./home:./company none ./mnt
: > company/.wh.bonus
if mount -o remount,append:./extra,del:./nope ./mnt 2>&1; then echo took a bad edit; fi
unionctl branch ls ./mnt | grep -c "$PWD/" || true
exec 3<mnt/code
if mount -o remount,append:./extra,del:./company ./mnt 2>&1; then echo took a busy delete; fi
exec 3<&-
unionctl branch ls ./mnt | grep -c "$PWD/" || true
mount -o remount,append:./extra ./mnt
ls mnt
echo --
mount -o remount,mod:./company=rr ./mnt
ls mnt
echo --
mount -o remount,ro,mod:./company=ro ./mnt
if touch mnt/new 2>/dev/null; then echo wrote to a ro remount; fi
ls mnt
echo --
mount -o remount,rw,del:./extra ./mnt
ls mnt
echo --
touch mnt/new
if mount -o remount,mod:./home=ro ./mnt 2>&1; then echo changed the rw branch; fi
umount "$MNT"
`
	out := e.mountScript(script)
	// A bad edit (del of no branch) and one the daemon refuses (del of
	// a branch with a file open) are refused with the good one before
	// them (append): the stack keeps its 2 branches.
	bad, busy := "is not a branch of this mount", "1 open files"
	names := "code\neat\nmeeting\nsleep\n--\n"
	want := names + "bonus\n" + names + names + names
	afterLine := func(s, sub string) string {
		i := strings.Index(s, sub)
		if i < 0 {
			return ""
		}
		return s[strings.Index(s[i:], "\n")+i+1:]
	}
	if rest := afterLine(out, bad); !strings.HasPrefix(rest, "2\n") || !strings.HasPrefix(afterLine(rest, busy), "2\n"+want) ||
		!strings.Contains(out, "stays rw while mounted") || strings.Contains(out, "took a bad edit") || strings.Contains(out, "took a busy delete") ||
		strings.Contains(out, "wrote to a ro remount") || strings.Contains(out, "changed the rw branch") {
		t.Errorf("mount(8) output:\n%s\nwant it to start with\n%s and refuse to change the rw branch", out, want)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "home", "new")); err != nil {
		t.Errorf("write after the rw remount: %v", err)
	}
	e.assertUnmounted()
}

// TestMountBadSpecs checks that every bad spec exits 2 with a message
// naming the problem, and mounts nothing.
func TestMountBadSpecs(t *testing.T) {
	e := newMountEnv(t)
	if err := os.WriteFile(filepath.Join(e.dir, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(e.dir, "home", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("home", filepath.Join(e.dir, "homelink")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"mount", "dirs=./nope:./company", "./mnt"}, "nope: no such directory"},
		{[]string{"mount", "dirs=./file:./company", "./mnt"}, "file: not a directory"},
		{[]string{"mount", "dirs=./home:./company:./homelink", "./mnt"}, "given twice"},
		{[]string{"mount", "dirs=./home:./home/sub", "./mnt"}, "nested branches"},
		{[]string{"mount", "dirs=./home:./company", "./home/sub"}, "mountpoint ./home/sub is inside branch"},
		{[]string{"mount", "dirs=./home/sub:./company", "./home"}, "is inside mountpoint"},
		{[]string{"mount", "dirs=./home=rx:./company", "./mnt"}, `unknown mode "rx"`},
		{[]string{"mount", "dirs=./company=ro:./home=rw", "./mnt"}, "only the top branch may be rw"},
		{[]string{"mount", "-o", "dirs=./home,fast", "./mnt"}, `unknown mount option "fast"`},
		{[]string{"mount", "-o", "udba=none", "./mnt"}, "no branches"},
		{[]string{"mount", "dirs=./home", "./nomnt"}, "mountpoint ./nomnt: no such directory"},
		{[]string{"mount", "dirs=./home", "./file"}, "mountpoint ./file: not a directory"},
		{[]string{"mount", "bogus", "./mnt"}, "unexpected argument"},
		{[]string{"none", "./mnt", "-o", "dirs=./home:./company,rw,colour=blue"}, `unknown mount option "colour=blue"`},
		{[]string{"mount", "-o", "dirs=./home:./company,shwh", "./mnt"}, "aufs option shwh is not supported: whiteouts are never shown"},
		{[]string{"mount", "-o", "dirs=./home:./company,add:1:./extra", "./mnt"}, "use unionctl branch add|del"},
		{[]string{"mount", "-o", "dirs=./home:./company,create=pmfsrr", "./mnt"}, "create=pmfsrr: policy pmfsrr takes"},
		{[]string{"none", "./home", "-o", "remount,ro"}, "remount " + filepath.Join(e.dir, "home") + ": not a unionctl mount"},
	} {
		out, errs, code := e.unionctl(tc.args...)
		if code != 2 || !strings.Contains(errs, tc.msg) {
			t.Errorf("unionctl %s: exit %d, stderr %q, stdout %q; want exit 2 naming %q", strings.Join(tc.args, " "), code, errs, out, tc.msg)
		}
		e.assertUnmounted()
	}
	// Mounting twice on the same mountpoint is refused too.
	e.mustUnionctl("mount", "dirs=./home:./company", "./mnt")
	if _, errs, code := e.unionctl("mount", "dirs=./extra", "./mnt"); code != 2 || !strings.Contains(errs, "already a unionctl mount") {
		t.Errorf("second mount: exit %d: %s", code, errs)
	}
	if got := e.ls(e.mnt); got != "code eat meeting sleep sub" {
		t.Errorf("ls mnt after the refused second mount = %q", got)
	}
}

// TestMountSignal: SIGTERM to the daemon unmounts cleanly; an unmount
// from outside ends the daemon; a foreground mount (-f) ends on SIGINT.
func TestMountSignal(t *testing.T) {
	e := newMountEnv(t)
	e.mustUnionctl("mount", "dirs=./home:./company", "./mnt")
	pid := unionfs.DaemonPid(e.mnt)
	if pid == 0 {
		t.Fatal("no daemon recorded")
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	e.assertUnmounted()

	// Unmounted from outside (umount(8) does this), the daemon exits.
	e.mustUnionctl("mount", "dirs=./home:./company", "./mnt")
	pid = unionfs.DaemonPid(e.mnt)
	if err := unix.Unmount(e.mnt, 0); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	e.assertUnmounted()

	cmd := exec.Command(filepath.Join(e.bin, "unionctl"), "mount", "-f", "dirs=./home:./company", "./mnt")
	cmd.Dir = e.dir
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(30 * time.Second)
	for _, err := unionfs.ControlBranches(e.mnt); err != nil; _, err = unionfs.ControlBranches(e.mnt) {
		select {
		case err := <-done:
			t.Fatalf("mount -f exited early: %v: %s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("mount -f never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := e.ls(e.mnt); got != "code eat meeting sleep" {
		t.Errorf("ls mnt (foreground) = %q", got)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("mount -f after SIGINT: %v: %s", err, errb.String())
	}
	e.assertUnmounted()
}

// TestUmountKilledDaemon: umount cleans a mount whose daemon was killed
// (ENOTCONN) and its state; umount of a plain directory exits 2.
func TestUmountKilledDaemon(t *testing.T) {
	e := newMountEnv(t)
	e.mustUnionctl("mount", "dirs=./home:./company", "./mnt")
	pid := unionfs.DaemonPid(e.mnt)
	if pid == 0 {
		t.Fatal("no daemon recorded")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	// The kernel answers ENOTCONN once the connection is gone; a request
	// it had in flight when the daemon died ends ECONNABORTED, and under
	// parallel test load the open of the root was seen to fail with EIO.
	if _, err := os.ReadDir(e.mnt); !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNABORTED) && !errors.Is(err, syscall.EIO) {
		t.Errorf("ls of a dead mount: %v; want ENOTCONN (or ECONNABORTED, EIO)", err)
	}
	if _, errs, code := e.unionctl("mount", "dirs=./home", "./mnt"); code != 2 || !strings.Contains(errs, "unionctl umount it") {
		t.Errorf("mount on a dead mount: exit %d: %s; want 2 and a hint", code, errs)
	}
	e.mustUnionctl("umount", "./mnt")
	e.assertUnmounted()
	if got := e.ls(e.mnt); got != "" {
		t.Errorf("mnt after umount = %q", got)
	}

	for _, p := range []string{"./mnt", "./home", "./nowhere"} {
		if _, errs, code := e.unionctl("umount", p); code != 2 || !strings.Contains(errs, "not a unionctl mount") {
			t.Errorf("umount %s: exit %d: %s; want 2, not a unionctl mount", p, code, errs)
		}
	}
}

// TestBranchCommands adds and deletes a branch on a live mount.
func TestBranchCommands(t *testing.T) {
	e := newMountEnv(t)
	if err := os.Mkdir(filepath.Join(e.dir, "home", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.mustUnionctl("mount", "dirs=./home:./company", "./mnt")
	home, company, extra := filepath.Join(e.dir, "home"), filepath.Join(e.dir, "company"), filepath.Join(e.dir, "extra")
	ls := e.mustUnionctl("branch", "ls", "./mnt")
	want := []string{"0 " + home + " rw", "1 " + company + " ro"}
	if got := mountBranchLines(ls); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("branch ls = %q; want %q", got, want)
	}

	e.mustUnionctl("branch", "add", "./mnt", "./extra")
	if got := e.ls(e.mnt); got != "bonus code eat meeting sleep sub" {
		t.Errorf("ls mnt after branch add = %q; want bonus too", got)
	}
	ls = e.mustUnionctl("branch", "ls", "./mnt")
	want = append(want, "2 "+extra+" ro")
	if got := mountBranchLines(ls); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("branch ls after add = %q; want %q", got, want)
	}

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"branch", "add", "./mnt", "./home/sub"}, "nested branches"},
		{[]string{"branch", "add", "./mnt", "./extra"}, "given twice"},
		{[]string{"branch", "add", "--index", "0", "./mnt", "./home/sub"}, "rw branch"},
		{[]string{"branch", "add", "./mnt", "./nope"}, "no such directory"},
		{[]string{"branch", "add", "./mnt", "./home/sub=zz"}, `unknown branch mode "zz"`},
		{[]string{"branch", "add", "--index", "9", "./mnt", "./home/sub=rr"}, "out of range"},
		{[]string{"branch", "add", "./mnt", "./mnt"}, "is branch"},
		{[]string{"branch", "del", "./mnt", "./nope"}, "not a branch"},
		{[]string{"branch", "ls", "./home"}, "not a unionctl mount"},
		{[]string{"branch", "mod", "./mnt", "./home=ro"}, "stays rw while mounted"},
		{[]string{"branch", "mod", "./mnt", "./extra=rw"}, "only ro or rr"},
		{[]string{"branch", "mod", "./mnt", "./extra"}, "want DIR=MODE"},
		{[]string{"branch", "mod", "./mnt", "./extra=zz"}, `unknown branch mode "zz"`},
		{[]string{"branch", "mod", "./mnt", "./nope=rr"}, "not a branch"},
	} {
		if _, errs, code := e.unionctl(tc.args...); code != 2 || !strings.Contains(errs, tc.msg) {
			t.Errorf("unionctl %s: exit %d: %s; want 2 naming %q", strings.Join(tc.args, " "), code, errs, tc.msg)
		}
	}

	e.mustUnionctl("branch", "del", "./mnt", "./extra")
	if got := e.ls(e.mnt); got != "code eat meeting sleep sub" {
		t.Errorf("ls mnt after branch del = %q; want bonus gone", got)
	}
	e.mustUnionctl("branch", "add", "--index", "1", "./mnt", "./extra=rr")
	ls = e.mustUnionctl("branch", "ls", "./mnt")
	want = []string{"0 " + home + " rw", "1 " + extra + " rr", "2 " + company + " ro"}
	if got := mountBranchLines(ls); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("branch ls after add --index 1 = %q; want %q", got, want)
	}
	// A whiteout in extra counts once it is ro, and no more when rr.
	if err := os.WriteFile(filepath.Join(extra, ".wh.eat"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"ro", "rr"} {
		e.mustUnionctl("branch", "mod", "./mnt", "./extra="+mode)
		want := map[string]string{"ro": "bonus code meeting sleep sub", "rr": "bonus code eat meeting sleep sub"}[mode]
		if got := e.ls(e.mnt); got != want {
			t.Errorf("ls mnt with extra %s = %q; want %q", mode, got, want)
		}
		if got := mountBranchLines(e.mustUnionctl("branch", "ls", "./mnt")); len(got) != 3 || got[1] != "1 "+extra+" "+mode {
			t.Errorf("branch ls after mod %s = %q", mode, got)
		}
	}
	e.mustUnionctl("umount", "./mnt")
	e.assertUnmounted()
}

// mountBranchLines turns `branch ls` output into "INDEX PATH MODE" lines.
func mountBranchLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return lines
}

// TestMountSaysFallback: a mount that cannot watch its branches (here one
// is a procfs directory) runs with udba=reval and says so, and why, on
// standard error; a mount that can says nothing.
func TestMountSaysFallback(t *testing.T) {
	e := newMountEnv(t)
	const procDir = "/proc/sys/kernel"
	_, err := os.Stat(procDir)
	testenv.Need(t, err == nil, fmt.Sprintf("%s: %v", procDir, err))
	out, errs, code := e.unionctl("mount", "dirs=./home:./company", "./mnt")
	if code != 0 || out != "" || errs != "" {
		t.Errorf("unionctl mount of watchable branches: exit %d, stdout %q, stderr %q; want a quiet mount", code, out, errs)
	}
	e.mustUnionctl("umount", "./mnt")
	out, errs, code = e.unionctl("mount", "dirs=./home=rw:"+procDir+"=ro", "./mnt")
	if code != 0 || !strings.Contains(errs, "udba=reval") || !strings.Contains(errs, procDir) {
		t.Errorf("unionctl mount over %s: exit %d, stdout %q, stderr %q; want it mounted, saying udba=reval and why", procDir, code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(e.mnt, "hostname")); err != nil {
		t.Errorf("the procfs branch through the union: %v", err)
	}
	e.mustUnionctl("umount", "./mnt")
	e.assertUnmounted()
}
