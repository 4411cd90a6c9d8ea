package unionfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

// nobody is the unprivileged user the permission tests act as.
const nobody = 65534

// The tags of a POSIX ACL entry, and the id of entries that name none.
const (
	aclUserObj     = 0x01
	aclUser        = 0x02
	aclGroupObj    = 0x04
	aclMask        = 0x10
	aclOther       = 0x20
	aclUndefinedID = 0xffffffff
)

// aclEntry is one entry of a POSIX ACL: tag, rwx bits, user or group id.
type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// encodeACL gives the value of a system.posix_acl_* attribute: version
// 2, then each entry little-endian, in the kernel's order (by tag).
func encodeACL(es ...aclEntry) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range es {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// aclNobody is an ACL that gives the owner rw, nobody perm and the rest
// nothing beyond what mask and other allow.
func aclNobody(perm, other uint16) []byte {
	return encodeACL(
		aclEntry{aclUserObj, 6, aclUndefinedID},
		aclEntry{aclUser, perm, nobody},
		aclEntry{aclGroupObj, 4, aclUndefinedID},
		aclEntry{aclMask, 4, aclUndefinedID},
		aclEntry{aclOther, other, aclUndefinedID},
	)
}

// needACLs sets acl as the access ACL of branch file p, or skips (fails
// under UNIONSTACK_REQUIRE_ALL) where the branch file system has no ACLs.
func needACLs(t *testing.T, p string, acl []byte) {
	t.Helper()
	err := unix.Setxattr(p, "system.posix_acl_access", acl, 0)
	testenv.Need(t, err == nil, fmt.Sprintf("POSIX ACLs on the branch file system (%v)", err))
}

// asNobody runs argv in a process with nobody's credentials and returns
// its standard output; its error says EACCES where the command reported
// a permission denial.
func asNobody(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if strings.Contains(errb.String(), "Permission denied") {
			err = syscall.EACCES
		}
		return "", fmt.Errorf("%s as nobody: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// readAsNobody reads path as nobody.
func readAsNobody(path string) (string, error) { return asNobody("cat", path) }

// runAsNobody runs argv as nobody and fails the test if it fails.
func runAsNobody(t *testing.T, argv ...string) {
	t.Helper()
	if _, err := asNobody(argv...); err != nil {
		t.Fatal(err)
	}
}

// TestPermissionsAndACLsEnforced: the union's permission checks are the
// branches' own, POSIX ACLs included, for an unprivileged caller; an ACL
// set through the union copies the file up and takes effect; a default
// ACL of a directory gives its new files their ACL.
func TestPermissionsAndACLsEnforced(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{
		"1:plain":   "plain",
		"1:granted": "granted",
		"1:denied":  "denied",
		"1:later":   "later",
		"1:d/":      "",
	}, Options{Passthrough: true})
	testenv.OpenTempDirs(t, tu.mnt)
	for name, mode := range map[string]os.FileMode{"plain": 0o600, "later": 0o600, "denied": 0o644} {
		if err := os.Chmod(tu.b(1, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	// granted: mode 0640 with nobody named for r; denied: mode 0644,
	// but nobody named with no rights, which bars what other allows.
	needACLs(t, tu.b(1, "granted"), aclNobody(4, 0))
	if err := unix.Setxattr(tu.b(1, "denied"), "system.posix_acl_access", aclNobody(0, 4), 0); err != nil {
		t.Fatal(err)
	}

	if _, err := readAsNobody(tu.m("plain")); !isEACCES(err) {
		t.Errorf("nobody reading a 0600 file of root: %v, want permission denied", err)
	}
	if got, err := readAsNobody(tu.m("granted")); err != nil || got != "granted" {
		t.Errorf("nobody reading a file whose ACL grants it read: %q, %v", got, err)
	}
	if _, err := readAsNobody(tu.m("denied")); !isEACCES(err) {
		t.Errorf("nobody reading a file whose ACL names it with no rights: %v, want permission denied", err)
	}

	// An ACL set through the union: the file is copied up, the ACL
	// holds, and reads back as it was set.
	acl := aclNobody(4, 0)
	if err := unix.Setxattr(tu.m("later"), "system.posix_acl_access", acl, 0); err != nil {
		t.Fatalf("set an ACL through the union: %v", err)
	}
	if got, err := readAsNobody(tu.m("later")); err != nil || got != "later" {
		t.Errorf("nobody reading a file after an ACL granted it read: %q, %v", got, err)
	}
	buf := make([]byte, 256)
	n, err := unix.Getxattr(tu.b(0, "later"), "system.posix_acl_access", buf)
	if err != nil || !bytes.Equal(buf[:n], acl) {
		t.Errorf("ACL of the copied-up file: % x, %v; want % x", buf[:max(n, 0)], err, acl)
	}
	if _, err := readAsNobody(tu.b(1, "later")); !isEACCES(err) {
		t.Errorf("the lower file changed with the ACL set through the union: %v", err)
	}

	// A copy-up keeps a lower file's ACL; a chmod through the union
	// narrows the ACL's mask, as chmod does on the branch.
	f, err := os.OpenFile(tu.m("granted"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := unix.Getxattr(tu.b(0, "granted"), "system.posix_acl_access", buf); err != nil {
		t.Errorf("the copy-up of a file with an ACL has none: %v", err)
	}
	if got, err := readAsNobody(tu.m("granted")); err != nil || got != "granted" {
		t.Errorf("nobody reading a copied-up file whose ACL grants it read: %q, %v", got, err)
	}
	if err := os.Chmod(tu.m("granted"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readAsNobody(tu.m("granted")); !isEACCES(err) {
		t.Errorf("nobody reading a file whose ACL mask chmod 0600 emptied: %v, want permission denied", err)
	}

	// A default ACL on a merged directory reaches the files made in it.
	def := aclNobody(4, 0)
	if err := unix.Setxattr(tu.m("d"), "system.posix_acl_default", def, 0); err != nil {
		t.Fatalf("set a default ACL through the union: %v", err)
	}
	writeFile(t, tu.m("d/new"), "new")
	if got, err := readAsNobody(tu.m("d/new")); err != nil || got != "new" {
		t.Errorf("nobody reading a new file that inherits an ACL granting it read: %q, %v", got, err)
	}
	if _, err := unix.Getxattr(tu.b(0, "d/new"), "system.posix_acl_access", buf); err != nil {
		t.Errorf("the new file has no ACL of its own: %v", err)
	}
	if err := os.Mkdir(tu.m("d/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, attr := range []string{"system.posix_acl_access", "system.posix_acl_default"} {
		if _, err := unix.Getxattr(tu.b(0, "d/sub"), attr, buf); err != nil {
			t.Errorf("a new directory under a default ACL has no %s: %v", attr, err)
		}
	}
}

// isEACCES tells whether err is a permission denial.
func isEACCES(err error) bool { return errors.Is(err, syscall.EACCES) }

// TestOutsideACLChangeShows: the kernel caches an inode's ACL; an ACL
// changed on a branch from outside shows once the union's cache of that
// file lapses (short timeouts) or at once under udba=notify.
func TestOutsideACLChangeShows(t *testing.T) {
	short := 100 * time.Millisecond
	notify, err := ParseOptions("dirs=/a:/b,udba=notify")
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]Options{
		"timeouts": {EntryTimeout: short, AttrTimeout: short, NegativeTimeout: short, Passthrough: true},
		"notify":   notify.Options,
	} {
		t.Run(name, func(t *testing.T) {
			tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "f"}, opts)
			testenv.OpenTempDirs(t, tu.mnt)
			if err := os.Chmod(tu.b(1, "f"), 0o600); err != nil {
				t.Fatal(err)
			}
			needACLs(t, tu.b(1, "f"), aclNobody(4, 0))
			if _, err := readAsNobody(tu.m("f")); err != nil {
				t.Fatalf("nobody reading a file whose ACL grants it read: %v", err)
			}
			if err := unix.Removexattr(tu.b(1, "f"), "system.posix_acl_access"); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, err := readAsNobody(tu.m("f"))
				if isEACCES(err) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the ACL removed from the lower file still grants read: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// onNobodyThread runs f on a thread whose file system ids are nobody's:
// the kernel checks those, and FUSE reports them as the caller.
func onNobodyThread(f func() error) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with nobody's ids
		unix.Setfsgid(nobody)
		unix.Setfsuid(nobody)
		done <- f()
	}()
	return <-done
}

// TestListxattrHidesTrustedFromUsers: trusted.* names are listed to root
// only, as Linux file systems (and kernel overlayfs) list them.
func TestListxattrHidesTrustedFromUsers(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "f"}, Options{Passthrough: true})
	testenv.OpenTempDirs(t, tu.mnt)
	for k, v := range map[string]string{"trusted.secret": "s", "user.open": "o"} {
		if err := unix.Lsetxattr(tu.b(1, "f"), k, []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	list := func() (string, error) {
		buf := make([]byte, 256)
		n, err := unix.Llistxattr(tu.m("f"), buf)
		if err != nil {
			return "", err
		}
		size, err := unix.Llistxattr(tu.m("f"), nil)
		if err == nil && size != n {
			err = fmt.Errorf("the size asked for (%d) is not the list's (%d)", size, n)
		}
		names := strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00")
		sort.Strings(names)
		return strings.Join(names, " "), err
	}
	if got, err := list(); err != nil || got != "trusted.secret user.open" {
		t.Errorf("root lists %q, %v; want trusted.secret user.open", got, err)
	}
	var got string
	err := onNobodyThread(func() (err error) {
		got, err = list()
		return err
	})
	if err != nil || got != "user.open" {
		t.Errorf("nobody lists %q, %v; want user.open", got, err)
	}
}

// TestACLByOutsiderClearsSetgid: an access ACL set by its owner, who is
// not in the file's group, clears the file's set-group-ID bit, as on a
// local file system (the kernel asks the daemon to, which sets the ACL
// as root).
func TestACLByOutsiderClearsSetgid(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "f"}, Options{Passthrough: true})
	testenv.OpenTempDirs(t, tu.mnt)
	if err := unix.Lchown(tu.b(1, "f"), nobody, 0); err != nil {
		t.Fatal(err)
	}
	needACLs(t, tu.b(1, "f"), aclNobody(4, 0))
	if err := unix.Chmod(tu.b(1, "f"), 0o2775); err != nil {
		t.Fatal(err)
	}
	err := onNobodyThread(func() error {
		return unix.Setxattr(tu.m("f"), "system.posix_acl_access", aclNobody(6, 4), 0)
	})
	if err != nil {
		t.Fatalf("set an ACL as the file's owner: %v", err)
	}
	if st := statT(t, tu.m("f")); st.Mode&unix.S_ISGID != 0 {
		t.Errorf("set-group-ID kept (mode %04o) after an ACL set by the owner outside the file's group", st.Mode&07777)
	}
	// Root keeps the bit: it may.
	if err := unix.Chmod(tu.m("f"), 0o2775); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(tu.m("f"), "system.posix_acl_access", aclNobody(4, 4), 0); err != nil {
		t.Fatal(err)
	}
	if st := statT(t, tu.m("f")); st.Mode&unix.S_ISGID == 0 {
		t.Errorf("an ACL set by root cleared set-group-ID (mode %04o)", st.Mode&07777)
	}
}

// TestNewFilesOwners: what an unprivileged caller makes through the
// union is its own; in a set-group-ID directory (merged, its rw copy made
// by the copy-up) it takes the directory's group, and a new directory
// keeps the set-group-ID bit, as on any Linux file system.
func TestNewFilesOwners(t *testing.T) {
	const users = 100
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:open/": "", "1:sgid/": "", "1:sgid/old/": ""}, Options{Passthrough: true})
	testenv.OpenTempDirs(t, tu.mnt)
	if err := os.Chmod(tu.b(1, "open"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tu.b(1, "sgid"), 0, users); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tu.b(1, "sgid"), 0o777|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	runAsNobody(t, "touch", tu.m("open/f"))
	runAsNobody(t, "mkdir", tu.m("open/d"))
	runAsNobody(t, "touch", tu.m("sgid/f"))
	runAsNobody(t, "mkdir", tu.m("sgid/d"))
	// A directory made over a removed lower one is opaque, made aside
	// and renamed into place: it inherits all the same.
	if err := os.Remove(tu.m("sgid/old")); err != nil {
		t.Fatal(err)
	}
	runAsNobody(t, "mkdir", tu.m("sgid/old"))
	if _, err := os.Lstat(tu.b(0, "sgid/old/"+opqMarker)); err != nil {
		t.Errorf("the directory made over a removed lower one is not opaque: %v", err)
	}
	// A set-user-ID file made by nobody keeps the bit its chown clears.
	err := onNobodyThread(func() error {
		fd, err := unix.Open(tu.m("open/suid"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o4755)
		if err == nil {
			unix.Close(fd)
		}
		return err
	})
	if err != nil {
		t.Fatalf("create a set-user-ID file as nobody: %v", err)
	}
	// So does an unnamed file (O_TMPFILE) linked in later.
	err = onNobodyThread(func() error {
		fd, err := unix.Open(tu.m("sgid"), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, tu.m("sgid/tmp"), unix.AT_SYMLINK_FOLLOW)
	})
	if err != nil {
		t.Fatalf("make and link an unnamed file as nobody: %v", err)
	}
	if st := statT(t, tu.m("open/suid")); st.Uid != nobody || st.Mode&07777 != 0o4755 {
		t.Errorf("set-user-ID file made by nobody: owner %d, mode %04o; want %d, 4755", st.Uid, st.Mode&07777, nobody)
	}
	for _, c := range []struct {
		path     string
		uid, gid uint32
		setgid   bool
	}{
		{"open/f", nobody, nobody, false},
		{"open/d", nobody, nobody, false},
		{"sgid/f", nobody, users, false},
		{"sgid/d", nobody, users, true},
		{"sgid/old", nobody, users, true},
		{"sgid/tmp", nobody, users, false},
	} {
		for _, p := range []string{tu.m(c.path), tu.b(0, c.path)} {
			st := statT(t, p)
			if st.Uid != c.uid || st.Gid != c.gid || (st.Mode&syscall.S_ISGID != 0) != c.setgid {
				t.Errorf("%s: owner %d:%d, set-group-ID %v; want %d:%d, %v", p, st.Uid, st.Gid, st.Mode&syscall.S_ISGID != 0, c.uid, c.gid, c.setgid)
			}
		}
	}
}
