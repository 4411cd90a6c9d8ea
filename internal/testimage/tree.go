package testimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/internal/testenv"
)

// ExtractWithTar unpacks the image into dir the independent way: for each
// layer, whiteouts and opaque directories are applied by hand (deleting
// what they name in the tree so far), then GNU tar extracts the layer's
// other entries with owners, modes and xattrs.
func (im *Image) ExtractWithTar(t testing.TB, dir string) {
	t.Helper()
	tarBin := testenv.NeedCommand(t, "tar")
	scratch := t.TempDir()
	for i, l := range im.Layers {
		if err := applyWhiteoutsByHand(dir, l.Tar); err != nil {
			t.Fatalf("layer %d: whiteouts: %v", i, err)
		}
		f := filepath.Join(scratch, fmt.Sprintf("layer%d.tar", i))
		if err := os.WriteFile(f, l.Tar, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(tarBin, "-x", "-p", "-f", f, "-C", dir, "--numeric-owner",
			"--xattrs", "--xattrs-include=*", "--exclude=.wh.*")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("layer %d: %v: %v\n%s", i, cmd.Args, err, out)
		}
	}
}

// applyWhiteoutsByHand deletes, in the tree dir, what the whiteouts and
// opaque markers of the layer tar name.
func applyWhiteoutsByHand(dir string, layer []byte) error {
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(hdr.Name)
		parent, base := path.Dir(name), path.Base(name)
		switch {
		case base == ".wh..wh..opq":
			entries, err := os.ReadDir(filepath.Join(dir, parent))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			for _, e := range entries {
				if err := os.RemoveAll(filepath.Join(dir, parent, e.Name())); err != nil {
					return err
				}
			}
		case strings.HasPrefix(base, ".wh."):
			if err := os.RemoveAll(filepath.Join(dir, parent, strings.TrimPrefix(base, ".wh."))); err != nil {
				return err
			}
		}
	}
}

// CompareTrees returns the differences between the trees want and got:
// paths present in one only, and for each path its type, permission bits
// (with setuid, setgid, sticky), owner, content, link target, xattrs and
// which paths are hard links of each other. Times are not compared.
func CompareTrees(want, got string) ([]string, error) {
	w, err := scanTree(want)
	if err != nil {
		return nil, err
	}
	g, err := scanTree(got)
	if err != nil {
		return nil, err
	}
	var diffs []string
	for p, we := range w {
		ge, ok := g[p]
		if !ok {
			diffs = append(diffs, "missing: "+p)
			continue
		}
		if we.String() != ge.String() {
			diffs = append(diffs, fmt.Sprintf("%s: want %s, got %s", p, we, ge))
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			diffs = append(diffs, "unexpected: "+p)
		}
	}
	sort.Strings(diffs)
	return diffs, nil
}

// treeEntry is what CompareTrees compares of one path.
type treeEntry struct {
	mode     fs.FileMode
	uid, gid uint32
	content  string // sha256 of a regular file, target of a symlink
	xattrs   []string
	links    []string // other paths of the same inode (regular files)
}

func (e treeEntry) String() string {
	return fmt.Sprintf("{%v %d:%d %s xattrs=%v links=%v}", e.mode, e.uid, e.gid, e.content, e.xattrs, e.links)
}

// scanTree records every path below root (root itself excluded).
func scanTree(root string) (map[string]*treeEntry, error) {
	out := map[string]*treeEntry{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := &treeEntry{mode: fi.Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), uid: st.Uid, gid: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.content = fmt.Sprintf("sha256:%x", sha256.Sum256(data))
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.content, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeDevice != 0:
			e.content = fmt.Sprintf("dev %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if e.xattrs, err = listXattrs(p); err != nil {
			return fmt.Errorf("xattrs of %s: %w", p, err)
		}
		out[rel] = e
		return nil
	})
	for _, paths := range inodes {
		for _, p := range paths {
			for _, q := range paths {
				if p != q {
					out[p].links = append(out[p].links, q)
				}
			}
			sort.Strings(out[p].links)
		}
	}
	return out, err
}

// listXattrs returns "name=value" for each xattr of p (not following a
// symlink), sorted; security.selinux is left out.
func listXattrs(p string) ([]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || name == "security.selinux" {
			continue
		}
		val := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return nil, err
		}
		out = append(out, name+"="+string(val[:vn]))
	}
	sort.Strings(out)
	return out, nil
}
