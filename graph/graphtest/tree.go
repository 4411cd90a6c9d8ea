package graphtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// EntryType is the kind of a tree Entry.
type EntryType int

// The entry types. TypeAbsent is a name that must not exist: WriteTree
// removes it, CheckTree checks it is gone.
const (
	TypeFile EntryType = iota + 1
	TypeDir
	TypeSymlink
	TypeHardlink
	TypeFifo
	TypeCharDev
	TypeBlockDev
	TypeAbsent
)

// String names the entry type.
func (e EntryType) String() string {
	switch e {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeHardlink:
		return "hardlink"
	case TypeFifo:
		return "fifo"
	case TypeCharDev:
		return "char device"
	case TypeBlockDev:
		return "block device"
	case TypeAbsent:
		return "absent"
	}
	return "unknown"
}

// Entry is one name in a declarative tree spec: WriteTree creates it,
// CheckTree checks it. Build entries with File, Dir, Symlink, Hardlink,
// Fifo, CharDev, BlockDev, Sparse and Absent, then refine them with Owner,
// Xattr, NoXattr, ModTime and Links.
type Entry struct {
	Path    string      // slash-separated, relative to the tree's root
	Type    EntryType   // what the entry is
	Mode    os.FileMode // permission bits plus os.ModeSetuid, os.ModeSetgid, os.ModeSticky (not for symlinks and hard links)
	Content string      // TypeFile: the data (for a sparse file: the data at each of Offsets)
	Target  string      // TypeSymlink: the link text; TypeHardlink: the path of the existing name it links to
	Major   uint32      // TypeCharDev, TypeBlockDev
	Minor   uint32      // TypeCharDev, TypeBlockDev

	// Size, when > 0, makes a TypeFile sparse: Size bytes long, Content at
	// each of Offsets and holes elsewhere. CheckTree also checks that the
	// file takes less than half of Size on disk.
	Size    int64
	Offsets []int64

	UID, GID int               // owner, when HasOwner
	HasOwner bool              // set by Owner; otherwise the owner is neither set nor checked
	Xattrs   map[string]string // extended attributes set and checked (others are ignored)
	NoXattrs []string          // extended attributes removed and checked absent
	MTime    time.Time         // when not zero: atime and mtime set, mtime checked
	Nlink    uint64            // when not zero: the link count CheckTree expects
}

// File is a regular file with content and mode.
func File(path, content string, mode os.FileMode) Entry {
	return Entry{Path: path, Type: TypeFile, Content: content, Mode: mode}
}

// Sparse is a regular file of size bytes holding data at each offset and
// holes everywhere else.
func Sparse(path string, size int64, data string, mode os.FileMode, offsets ...int64) Entry {
	return Entry{Path: path, Type: TypeFile, Content: data, Mode: mode, Size: size, Offsets: offsets}
}

// Dir is a directory with mode.
func Dir(path string, mode os.FileMode) Entry {
	return Entry{Path: path, Type: TypeDir, Mode: mode}
}

// Symlink is a symbolic link to target (the link text, not resolved).
func Symlink(path, target string) Entry {
	return Entry{Path: path, Type: TypeSymlink, Target: target}
}

// Hardlink is a second name for target, a path in the same tree.
func Hardlink(path, target string) Entry {
	return Entry{Path: path, Type: TypeHardlink, Target: target}
}

// Fifo is a named pipe.
func Fifo(path string, mode os.FileMode) Entry {
	return Entry{Path: path, Type: TypeFifo, Mode: mode}
}

// CharDev is a character device node.
func CharDev(path string, mode os.FileMode, major, minor uint32) Entry {
	return Entry{Path: path, Type: TypeCharDev, Mode: mode, Major: major, Minor: minor}
}

// BlockDev is a block device node.
func BlockDev(path string, mode os.FileMode, major, minor uint32) Entry {
	return Entry{Path: path, Type: TypeBlockDev, Mode: mode, Major: major, Minor: minor}
}

// Absent is a name that must not exist (WriteTree removes it, with
// everything below it).
func Absent(path string) Entry {
	return Entry{Path: path, Type: TypeAbsent}
}

// Owner sets the entry's owner.
func (e Entry) Owner(uid, gid int) Entry {
	e.UID, e.GID, e.HasOwner = uid, gid, true
	return e
}

// Xattr sets an extended attribute of the entry.
func (e Entry) Xattr(name, value string) Entry {
	x := make(map[string]string, len(e.Xattrs)+1)
	for k, v := range e.Xattrs {
		x[k] = v
	}
	x[name] = value
	e.Xattrs = x
	return e
}

// NoXattr says the entry must not have the extended attribute name.
func (e Entry) NoXattr(name string) Entry {
	e.NoXattrs = append(append([]string(nil), e.NoXattrs...), name)
	return e
}

// ModTime sets the entry's atime and mtime (checked: mtime).
func (e Entry) ModTime(t time.Time) Entry {
	e.MTime = t
	return e
}

// Links says how many names the entry's inode must have.
func (e Entry) Links(n uint64) Entry {
	e.Nlink = n
	return e
}

// unixMode converts the permission and special bits of m to a mode_t.
func unixMode(m os.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	return mode
}

// hasMode says whether the entry type has its own mode.
func (e Entry) hasMode() bool {
	return e.Type != TypeSymlink && e.Type != TypeHardlink && e.Type != TypeAbsent
}

// full is the entry's path under root.
func (e Entry) full(root string) string {
	return filepath.Join(root, filepath.FromSlash(e.Path))
}

// WriteTree creates entries under root, in order, making missing parent
// directories (0755). An existing name of another type is replaced; an
// existing directory is kept (its mode, owner and xattrs are set). Owner is
// set before mode (chown clears setuid), xattrs after both, and times last,
// in reverse order, so that a directory keeps the time it was given even
// when entries were created in it afterwards. It fails t on any error.
func WriteTree(t testing.TB, root string, entries ...Entry) {
	t.Helper()
	for _, e := range entries {
		if err := writeEntry(root, e); err != nil {
			t.Fatalf("write tree %s: %s %s: %v", root, e.Type, e.Path, err)
		}
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.MTime.IsZero() {
			continue
		}
		ts := unix.NsecToTimespec(e.MTime.UnixNano())
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, e.full(root), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatalf("write tree %s: set times of %s: %v", root, e.Path, err)
		}
	}
}

// writeEntry creates one entry with its metadata (not its times).
func writeEntry(root string, e Entry) error {
	if e.Path == "" || strings.HasPrefix(e.Path, "/") || strings.Contains("/"+e.Path+"/", "/../") {
		return fmt.Errorf("bad entry path %q (want a relative path inside the tree)", e.Path)
	}
	p := e.full(root)
	if e.Type == TypeAbsent {
		return os.RemoveAll(p)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	var st unix.Stat_t
	exists := unix.Lstat(p, &st) == nil
	isDir := exists && st.Mode&unix.S_IFMT == unix.S_IFDIR
	isFile := exists && st.Mode&unix.S_IFMT == unix.S_IFREG
	if exists && !(e.Type == TypeDir && isDir) && !(e.Type == TypeFile && isFile) {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	var err error
	switch e.Type {
	case TypeFile:
		err = writeFile(p, e)
	case TypeDir:
		if !isDir {
			err = os.Mkdir(p, 0o700)
		}
	case TypeSymlink:
		err = os.Symlink(e.Target, p)
	case TypeHardlink:
		err = os.Link(filepath.Join(root, filepath.FromSlash(e.Target)), p)
	case TypeFifo:
		err = unix.Mkfifo(p, 0o600)
	case TypeCharDev:
		err = unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(e.Major, e.Minor)))
	case TypeBlockDev:
		err = unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(e.Major, e.Minor)))
	default:
		err = fmt.Errorf("unknown entry type %d", e.Type)
	}
	if err != nil {
		return err
	}
	if e.HasOwner {
		if err := unix.Lchown(p, e.UID, e.GID); err != nil {
			return fmt.Errorf("lchown: %w", err)
		}
	}
	if e.hasMode() {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, unixMode(e.Mode), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	for _, name := range sortedKeys(e.Xattrs) {
		if err := unix.Lsetxattr(p, name, []byte(e.Xattrs[name]), 0); err != nil {
			return fmt.Errorf("setxattr %s: %w", name, err)
		}
	}
	for _, name := range e.NoXattrs {
		if err := unix.Lremovexattr(p, name); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("removexattr %s: %w", name, err)
		}
	}
	return nil
}

// writeFile writes the content of a file entry, truncating what was there.
func writeFile(p string, e Entry) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if e.Size > 0 {
		err = f.Truncate(e.Size)
		for _, off := range e.Offsets {
			if err == nil {
				_, err = f.WriteAt([]byte(e.Content), off)
			}
		}
	} else {
		_, err = f.WriteString(e.Content)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// CheckTree checks that every entry is under root as declared: type, mode
// (with setuid, setgid, sticky), owner when set, content, link target,
// device numbers, the declared xattrs (others are ignored), mtime when
// set, link count when set, and that hard links share their inode. Names
// not declared are not looked at (see CheckNames). Each difference is
// reported with t.Errorf.
func CheckTree(t testing.TB, root string, entries ...Entry) {
	t.Helper()
	for _, e := range entries {
		for _, problem := range checkEntry(root, e) {
			t.Errorf("check tree %s: %s %s: %s", root, e.Type, e.Path, problem)
		}
	}
}

// checkEntry returns what is wrong with one entry.
func checkEntry(root string, e Entry) []string {
	p := e.full(root)
	var st unix.Stat_t
	err := unix.Lstat(p, &st)
	if e.Type == TypeAbsent {
		if err == nil {
			return []string{fmt.Sprintf("exists (mode %#o) but must not", st.Mode)}
		}
		if !errors.Is(err, unix.ENOENT) {
			return []string{fmt.Sprintf("lstat: %v (want ENOENT)", err)}
		}
		return nil
	}
	if err != nil {
		return []string{fmt.Sprintf("lstat: %v", err)}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	want := map[EntryType]uint32{
		TypeFile: unix.S_IFREG, TypeDir: unix.S_IFDIR, TypeSymlink: unix.S_IFLNK, TypeFifo: unix.S_IFIFO,
		TypeCharDev: unix.S_IFCHR, TypeBlockDev: unix.S_IFBLK,
	}
	if e.Type == TypeHardlink {
		var tst unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, filepath.FromSlash(e.Target)), &tst); err != nil {
			bad("lstat of link target %s: %v", e.Target, err)
		} else if tst.Ino != st.Ino || tst.Dev != st.Dev {
			bad("not a hard link of %s: inode %d:%d, target's %d:%d", e.Target, st.Dev, st.Ino, tst.Dev, tst.Ino)
		} else if st.Nlink < 2 {
			bad("link count %d, want at least 2", st.Nlink)
		}
	} else if typ := st.Mode & unix.S_IFMT; typ != want[e.Type] {
		bad("file type %#o, want %#o", typ, want[e.Type])
		return problems
	}
	if e.hasMode() && st.Mode&0o7777 != unixMode(e.Mode) {
		bad("mode %#o, want %#o", st.Mode&0o7777, unixMode(e.Mode))
	}
	if e.HasOwner && (int(st.Uid) != e.UID || int(st.Gid) != e.GID) {
		bad("owner %d:%d, want %d:%d", st.Uid, st.Gid, e.UID, e.GID)
	}
	if e.Nlink != 0 && uint64(st.Nlink) != e.Nlink {
		bad("link count %d, want %d", st.Nlink, e.Nlink)
	}
	switch e.Type {
	case TypeFile:
		problems = append(problems, checkContent(p, e, &st)...)
	case TypeSymlink:
		if target, err := os.Readlink(p); err != nil || target != e.Target {
			bad("link target %q (%v), want %q", target, err, e.Target)
		}
	case TypeCharDev, TypeBlockDev:
		if maj, min := unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)); maj != e.Major || min != e.Minor {
			bad("device %d,%d, want %d,%d", maj, min, e.Major, e.Minor)
		}
	}
	for _, name := range sortedKeys(e.Xattrs) {
		buf := make([]byte, 64<<10)
		n, err := unix.Lgetxattr(p, name, buf)
		if err != nil {
			bad("xattr %s: %v, want %q", name, err, e.Xattrs[name])
		} else if got := string(buf[:n]); got != e.Xattrs[name] {
			bad("xattr %s = %q, want %q", name, got, e.Xattrs[name])
		}
	}
	for _, name := range e.NoXattrs {
		if _, err := unix.Lgetxattr(p, name, nil); !errors.Is(err, unix.ENODATA) {
			bad("xattr %s present (%v), want it absent", name, err)
		}
	}
	if !e.MTime.IsZero() {
		if got := time.Unix(st.Mtim.Unix()); !got.Equal(e.MTime) {
			bad("mtime %s, want %s", got.UTC().Format(time.RFC3339Nano), e.MTime.UTC().Format(time.RFC3339Nano))
		}
	}
	return problems
}

// checkContent compares a regular file's data (and for a sparse file its
// holes) with the entry.
func checkContent(p string, e Entry, st *unix.Stat_t) []string {
	data, err := os.ReadFile(p)
	if err != nil {
		return []string{fmt.Sprintf("read: %v", err)}
	}
	if e.Size == 0 {
		if string(data) != e.Content {
			return []string{fmt.Sprintf("content %s, want %s", brief(data), brief([]byte(e.Content)))}
		}
		return nil
	}
	if int64(len(data)) != e.Size {
		return []string{fmt.Sprintf("size %d, want %d", len(data), e.Size)}
	}
	want := make([]byte, e.Size)
	for _, off := range e.Offsets {
		copy(want[off:], e.Content)
	}
	if !bytes.Equal(data, want) {
		for i := range data {
			if data[i] != want[i] {
				return []string{fmt.Sprintf("content differs from offset %d", i)}
			}
		}
	}
	if used := st.Blocks * 512; used > e.Size/2 {
		return []string{fmt.Sprintf("takes %d bytes on disk for %d bytes with holes: holes were filled", used, e.Size)}
	}
	return nil
}

// brief quotes data, cut short when long.
func brief(data []byte) string {
	if len(data) > 64 {
		return fmt.Sprintf("%q... (%d bytes)", data[:64], len(data))
	}
	return fmt.Sprintf("%q", data)
}

// CheckNames checks that the directory dir holds exactly names.
func CheckNames(t testing.TB, dir string, names ...string) {
	t.Helper()
	got, err := ReadNames(dir)
	if err != nil {
		t.Errorf("check names: %v", err)
		return
	}
	want := append([]string(nil), names...)
	sort.Strings(want)
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("check names %s: have %q, want %q", dir, got, want)
	}
}

// ReadNames returns the sorted names in directory dir.
func ReadNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil && err != io.EOF {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
