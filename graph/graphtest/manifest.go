package graphtest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// ManifestOptions says what Manifest records beyond the always-recorded
// path, type, mode, owner, size, content digest, link target, device
// numbers, hard-link group and extended attributes.
type ManifestOptions struct {
	// Times records every entry's mtime (ns) except the root directory's.
	Times bool
	// IgnoreXattrPrefixes leaves out extended attributes whose names
	// start with one of these (e.g. "trusted.overlay.").
	IgnoreXattrPrefixes []string
}

// Manifest describes the tree under root, one line per entry in path
// order ("." is root itself): two trees that must be the same have equal
// manifests. Names of a hard-linked inode after the first say "link=FIRST"
// instead of repeating its data.
func Manifest(root string, opts ManifestOptions) ([]string, error) {
	var lines []string
	first := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		typ := st.Mode & unix.S_IFMT
		if typ != unix.S_IFDIR && st.Nlink > 1 {
			id := [2]uint64{uint64(st.Dev), st.Ino}
			if f, ok := first[id]; ok {
				lines = append(lines, fmt.Sprintf("%s link=%s", rel, f))
				return nil
			}
			first[id] = rel
		}
		line := fmt.Sprintf("%s type=%o mode=%04o owner=%d:%d", rel, typ>>12, st.Mode&0o7777, st.Uid, st.Gid)
		switch typ {
		case unix.S_IFREG:
			sum, err := fileDigest(path)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" size=%d sha256=%s", st.Size, sum)
		case unix.S_IFLNK:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" target=%q", target)
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" dev=%d,%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
		}
		if st.Nlink > 1 && typ != unix.S_IFDIR {
			line += fmt.Sprintf(" nlink=%d", st.Nlink)
		}
		xattrs, err := manifestXattrs(path, opts.IgnoreXattrPrefixes)
		if err != nil {
			return err
		}
		line += xattrs
		if opts.Times && rel != "." {
			line += fmt.Sprintf(" mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		lines = append(lines, line)
		return nil
	})
	return lines, err
}

// fileDigest is the sha256 of a file's content.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// manifestXattrs lists the extended attributes of path, sorted, as
// " xattr.NAME=VALUE" fields.
func manifestXattrs(path string, ignore []string) (string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return "", nil
	}
	if err != nil {
		return "", &os.PathError{Op: "listxattr", Path: path, Err: err}
	}
	var names []string
next:
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		for _, p := range ignore {
			if strings.HasPrefix(name, p) {
				continue next
			}
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	val := make([]byte, 64<<10)
	for _, name := range names {
		m, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			return "", &os.PathError{Op: "getxattr " + name, Path: path, Err: err}
		}
		fmt.Fprintf(&b, " xattr.%s=%q", name, val[:m])
	}
	return b.String(), nil
}

// CheckSameTree checks that the trees got and want have equal manifests
// and reports each line that differs.
func CheckSameTree(t testing.TB, got, want string, opts ManifestOptions) {
	t.Helper()
	g, err := Manifest(got, opts)
	if err != nil {
		t.Errorf("manifest of %s: %v", got, err)
		return
	}
	w, err := Manifest(want, opts)
	if err != nil {
		t.Errorf("manifest of %s: %v", want, err)
		return
	}
	diffs := DiffManifests(w, g)
	if len(diffs) > 0 {
		t.Errorf("tree %s differs from %s:\n%s", got, want, strings.Join(diffs, "\n"))
	}
}

// DiffManifests lists the lines of two manifests that differ: those of
// want missing from got, then those of got that want lacks.
func DiffManifests(want, got []string) []string {
	inG, inW := map[string]bool{}, map[string]bool{}
	for _, l := range got {
		inG[l] = true
	}
	for _, l := range want {
		inW[l] = true
	}
	var diffs []string
	for _, l := range want {
		if !inG[l] {
			diffs = append(diffs, "  missing: "+l)
		}
	}
	for _, l := range got {
		if !inW[l] {
			diffs = append(diffs, "  extra:   "+l)
		}
	}
	return diffs
}
