package unionfs

import (
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The daemon reaches branch files by path. A path walk follows
// symlinks, so a directory of a branch swapped for a symlink from
// outside the mount would send an operation on a file below it to the
// symlink's target, with the daemon's rights (root's, for a union root
// mounted over a user's directory). Every operation on a branch file
// (lookup, listing, open, create, change, removal) therefore resolves
// the directories on the way beneath the branch root without following
// any symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), and acts on
// the last component in the directory so opened: by a *at call, or
// through a confined path (/proc/self/fd/N/NAME) for calls that take a
// path, which treat it as they treat any last component. A swapped
// directory makes the operation fail with ELOOP instead.

// noRelease is the release of a confined path that holds nothing.
func noRelease() {}

// openRoot opens the root of branch path for confined paths.
func openRoot(path string) (int, error) {
	return unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// confine returns a path naming rel of branch b, whose directories are
// resolved now (see above), and the release to call once the path is
// no longer used: the path is valid until then. The branch root itself
// is named by its own path.
func (b *branch) confine(rel string) (string, func(), syscall.Errno) {
	if rel == "" || b.rootFd < 0 {
		return b.join(rel), noRelease, 0
	}
	dir, name := splitRel(rel)
	if dir == "" {
		return procFdPath(b.rootFd, name), noRelease, 0
	}
	fd, err := openBeneath(b.rootFd, dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return "", nil, errnoOf(err)
	}
	return procFdPath(fd, name), func() { unix.Close(fd) }, 0
}

// confineDir is confine for a directory that is itself resolved
// without following a symlink (its path ends in "/."), so the paths of
// its children, made by appending to it, are confined too.
func (b *branch) confineDir(rel string) (string, func(), syscall.Errno) {
	if rel == "" {
		return b.path, noRelease, 0
	}
	return b.confine(rel + "/.")
}

// openSubdir makes directory name (0700) at the root of b, unless it
// exists, and opens it for confined paths (a symlink there is refused).
func (b *branch) openSubdir(name string) (int, syscall.Errno) {
	if err := unix.Mkdirat(b.rootFd, name, 0o700); err != nil && err != unix.EEXIST {
		return -1, errnoOf(err)
	}
	fd, err := openBeneath(b.rootFd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	return fd, errnoOf(err)
}

// splitRel splits a branch-relative path into its directory ("" at the
// root) and last name.
func splitRel(rel string) (dir, name string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

// procFdPath names name in the directory open as fd.
func procFdPath(fd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + name
}

// beneath is how a branch's directories are opened: beneath its root,
// never through a symlink.
var beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// lstat stats rel of b without following a symlink on the way (see
// confine) or at the end.
func (b *branch) lstat(rel string, st *syscall.Stat_t) error {
	if b.rootFd < 0 {
		return syscall.Lstat(b.join(rel), st)
	}
	if rel == "" {
		return syscall.Fstat(b.rootFd, st)
	}
	dir, name := splitRel(rel)
	fd := b.rootFd
	if dir != "" {
		var err error
		if fd, err = openBeneath(b.rootFd, dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC); err != nil {
			return err
		}
		defer unix.Close(fd)
	}
	// x/sys/unix's Stat_t is the kernel's struct stat, as syscall's is.
	return unix.Fstatat(fd, name, (*unix.Stat_t)(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW)
}

// lookupName is lstat of name in directory rel of b that also reports,
// when whiteouts asks, whether the whiteout of name is there (looked for
// unless name is a non-directory), from one opening of the directory.
func (b *branch) lookupName(rel, name string, st *syscall.Stat_t, whiteouts bool) (whited bool, err error) {
	wantWhiteout := func() bool {
		return whiteouts && (err != nil || st.Mode&syscall.S_IFMT == syscall.S_IFDIR)
	}
	if b.rootFd < 0 {
		err = syscall.Lstat(b.join(joinRel(rel, name)), st)
		return wantWhiteout() && b.exists(joinRel(rel, whPrefix+name)), err
	}
	fd := b.rootFd
	if rel != "" {
		if fd, err = openBeneath(b.rootFd, rel, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC); err != nil {
			return false, err
		}
		defer unix.Close(fd)
	}
	err = unix.Fstatat(fd, name, (*unix.Stat_t)(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW)
	if wantWhiteout() {
		var wst unix.Stat_t
		whited = unix.Fstatat(fd, whPrefix+name, &wst, unix.AT_SYMLINK_NOFOLLOW) == nil
	}
	return whited, err
}

// exists reports whether rel of b exists (see lstat).
func (b *branch) exists(rel string) bool {
	var st syscall.Stat_t
	return b.lstat(rel, &st) == nil
}

// readDir lists directory rel of b (without . and ..), opened without
// following a symlink (see confine).
func (b *branch) readDir(rel string) ([]dirent, error) {
	if b.rootFd < 0 {
		return readBranchDir(b.join(rel))
	}
	p := rel
	if p == "" {
		p = "."
	}
	fd, err := openBeneath(b.rootFd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return readDirFd(fd)
}

// openBeneath opens rel below directory dirfd with flags, beneath it
// and through no symlink.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags), Resolve: uint64(beneath)}
	for {
		fd, err := unix.Openat2(dirfd, rel, &how)
		if err != unix.EAGAIN && err != unix.EINTR { // EAGAIN: a rename raced the walk
			return fd, err
		}
	}
}
