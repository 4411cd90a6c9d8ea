package archive

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits on hostile headers.
const (
	maxNameLen = 4096 // PATH_MAX: longer names and link targets are refused
)

// Errors for entries that are refused.
var (
	errUnsafeName     = errors.New("unsafe name")
	errPlantedSymlink = errors.New("path goes through a symlink created by this layer")
	errEscapeSymlink  = errors.New("path goes through a symlink that points outside the root")
	errNotDir         = errors.New("parent is not a directory")
)

// cleanName turns a tar entry name into a clean path relative to the root,
// refusing what could escape it: absolute names, ".." components, NUL
// bytes and over-long names. "./" prefixes and trailing slashes are
// dropped; "." and "" yield "" (the root itself).
func cleanName(name string) (string, error) {
	if len(name) > maxNameLen {
		return "", fmt.Errorf("%w: name longer than %d bytes", errUnsafeName, maxNameLen)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: name contains NUL", errUnsafeName)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute name", errUnsafeName)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: name contains \"..\"", errUnsafeName)
		}
	}
	p := path.Clean(name)
	if p == "." {
		return "", nil
	}
	return p, nil
}

// splitName splits a clean relative path into its parent and base.
func splitName(rel string) (dir, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

// symlinkEscapes reports whether the symlink at rel with the given target
// climbs lexically above the root. Absolute targets are read inside the
// root (as the container sees them) and do not escape.
func symlinkEscapes(rel, target string) bool {
	if strings.HasPrefix(target, "/") {
		return false
	}
	dir, _ := splitName(rel)
	p := path.Clean(path.Join(dir, target))
	return p == ".." || strings.HasPrefix(p, "../")
}

// tree is a directory opened for resolving names strictly inside it.
type tree struct {
	path string
	fd   int
}

func openTree(p string) (*tree, error) {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &pathErr{"open", p, err}
	}
	return &tree{path: p, fd: fd}, nil
}

func (t *tree) close() {
	if t.fd >= 0 {
		unix.Close(t.fd)
		t.fd = -1
	}
}

// beneath opens rel (a clean relative path) as an O_PATH fd with flags,
// refusing symlinks anywhere on the way and anything outside the tree.
func (t *tree) beneath(rel string, flags int) (int, error) {
	if rel == "" {
		return unix.Dup(t.fd)
	}
	return openat2(t.fd, rel, flags, unix.RESOLVE_BENEATH|unix.RESOLVE_NO_SYMLINKS|unix.RESOLVE_NO_MAGICLINKS)
}

// inRoot opens rel resolving symlinks as if the tree were "/".
func (t *tree) inRoot(rel string, flags int) (int, error) {
	if rel == "" {
		return unix.Dup(t.fd)
	}
	return openat2(t.fd, rel, flags, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_MAGICLINKS)
}

func openat2(dirfd int, name string, flags int, resolve uint64) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolve}
	for {
		fd, err := unix.Openat2(dirfd, name, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

// pathErr is an error about a path in a tree.
type pathErr struct {
	op, path string
	err      error
}

func (e *pathErr) Error() string { return e.op + " " + e.path + ": " + e.err.Error() }
func (e *pathErr) Unwrap() error { return e.err }
