package archive

import (
	"archive/tar"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// layerWriter writes the tar of Diff and WriteLayer with one set of
// header conventions, so that the same change gives the same DiffID either
// way: PAX format, names relative with "/" after directories, numeric
// uid/gid only, mtime to the nanosecond, no atime or ctime, xattrs as
// SCHILY.xattr records (overlayfs's own left out), hard links between the
// entries of the tar as link entries, and whiteouts as empty files of
// mode 0, owner 0:0 and mtime 0 (the Unix epoch).
type layerWriter struct {
	tw    *tar.Writer
	sum   hash.Hash
	links map[[2]uint64]string
	buf   []byte
}

func newLayerWriter(w io.Writer) *layerWriter {
	sum := sha256.New()
	return &layerWriter{
		tw:    tar.NewWriter(io.MultiWriter(w, sum)),
		sum:   sum,
		links: map[[2]uint64]string{},
		buf:   make([]byte, copyBufSize),
	}
}

// whiteout writes the whiteout entry name (".wh.X" or ".wh..wh..opq"
// with its directory).
func (lw *layerWriter) whiteout(name string) error {
	return lw.tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, ModTime: time.Unix(0, 0), Format: tar.FormatPAX,
	})
}

// add writes the entry rel of the tree at root, whose lstat is st.
func (lw *layerWriter) add(root, rel string, st *unix.Stat_t) error {
	full := root + "/" + rel
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		target, err := os.Readlink(full)
		if err != nil {
			return err
		}
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // sockets are not layer content
	}
	if hdr.Typeflag != tar.TypeDir && st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := lw.links[key]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			lw.links[key] = rel
		}
	}
	xs, err := listXattrs(full)
	if err != nil {
		return fmt.Errorf("xattrs: %w", err)
	}
	if len(xs) > 0 {
		hdr.PAXRecords = map[string]string{}
		for k, v := range xs {
			hdr.PAXRecords[paxXattrPrefix+k] = string(v)
		}
	}
	if err := lw.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	f, err := os.OpenFile(full, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(lw.tw, io.LimitReader(f, hdr.Size), lw.buf)
	if err != nil {
		return err
	}
	if n != hdr.Size {
		return fmt.Errorf("file shrank while being read (%d of %d bytes)", n, hdr.Size)
	}
	return nil
}

// close ends the tar and returns its DiffID.
func (lw *layerWriter) close() (digest.Digest, error) {
	if err := lw.tw.Close(); err != nil {
		return "", err
	}
	return digest.NewDigestFromBytes(digest.SHA256, lw.sum.Sum(nil)), nil
}

// sortedNames lists directory path, sorted.
func sortedNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

func lstat(path string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
