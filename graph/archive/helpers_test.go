package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one entry of a tar built in a test.
type ent struct {
	h    *tar.Header
	body []byte
}

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func fileE(name, body string, mode int64) ent {
	return ent{&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: t0, Format: tar.FormatPAX}, []byte(body)}
}

func dirE(name string, mode int64) ent {
	return ent{&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: t0, Format: tar.FormatPAX}, nil}
}

func symE(name, target string) ent {
	return ent{&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: t0, Format: tar.FormatPAX}, nil}
}

func linkE(name, target string) ent {
	return ent{&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: t0, Format: tar.FormatPAX}, nil}
}

func fifoE(name string) ent {
	return ent{&tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: 0o640, ModTime: t0, Format: tar.FormatPAX}, nil}
}

func devE(name string, typ byte, major, minor int64) ent {
	return ent{&tar.Header{Typeflag: typ, Name: name, Mode: 0o660, Devmajor: major, Devminor: minor, ModTime: t0, Format: tar.FormatPAX}, nil}
}

// tarOf builds an uncompressed tar.
func tarOf(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		if err := tw.WriteHeader(e.h); err != nil {
			t.Fatalf("tar header %s: %v", e.h.Name, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatalf("tar body %s: %v", e.h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compress(t testing.TB, b []byte, c Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := CompressStream(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// sandbox is a scratch dir with a root to apply into and a sibling
// "outside" that must keep exactly its one sentinel file, untouched.
type sandbox struct {
	root, outside string
}

func newSandbox(t testing.TB) sandbox {
	t.Helper()
	base := t.TempDir()
	s := sandbox{root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{s.root, s.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.outside, "sentinel"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkOutside fails t unless the outside dir is still empty, and checks
// the root can be removed.
func (s sandbox) checkOutside(t testing.TB) {
	t.Helper()
	names, err := os.ReadDir(s.outside)
	if err != nil {
		t.Fatalf("outside dir: %v", err)
	}
	if len(names) != 1 || names[0].Name() != "sentinel" {
		t.Errorf("something was written outside the root: %v", names)
	}
	var st unix.Stat_t
	b, err := os.ReadFile(filepath.Join(s.outside, "sentinel"))
	if err != nil || string(b) != "s" || unix.Lstat(filepath.Join(s.outside, "sentinel"), &st) != nil || st.Nlink != 1 || st.Mode != unix.S_IFREG|0o644 {
		t.Errorf("the sentinel outside the root was changed: %q %v nlink %d mode %o", b, err, st.Nlink, st.Mode)
	}
	if err := os.RemoveAll(s.root); err != nil {
		t.Errorf("root not removable after apply: %v", err)
	}
}

func apply(t testing.TB, root string, b []byte, opts ApplyOptions) ApplyResult {
	t.Helper()
	res, err := Apply(context.Background(), root, bytes.NewReader(b), opts)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

// describe renders a tree's metadata and content, one line per entry,
// for comparing trees. Hard links show as "=> first name". Directory
// atimes are left out (reading a tree changes them).
func describe(t testing.TB, root string) string {
	t.Helper()
	var lines []string
	inodes := map[uint64]string{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d mtime=%d.%09d", rel, st.Mode, st.Uid, st.Gid, st.Mtim.Sec, st.Mtim.Nsec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if first, ok := inodes[st.Ino]; ok && st.Nlink > 1 {
				line += " => " + first
				break
			}
			inodes[st.Ino] = rel
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" size=%d content=%s", st.Size, sha(b)[7:19])
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		xs, err := listXattrs(p)
		if err != nil {
			return err
		}
		var keys []string
		for k, v := range xs {
			keys = append(keys, k+"="+hex.EncodeToString(v))
		}
		sort.Strings(keys)
		if len(keys) > 0 {
			line += " xattrs=" + strings.Join(keys, ",")
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatalf("describe %s: %v", root, err)
	}
	return strings.Join(lines, "\n")
}

// mountOverlay mounts overlayfs lower (colon-separated, top first) +
// upper at a new dir and unmounts it at cleanup.
func mountOverlay(t testing.TB, lower, upper string, extra ...string) string {
	t.Helper()
	base := t.TempDir()
	work, merged := filepath.Join(base, "work"), filepath.Join(base, "merged")
	os.Mkdir(work, 0o755)
	os.Mkdir(merged, 0o755)
	opts := "lowerdir=" + lower
	if upper != "" {
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	for _, e := range extra {
		opts += "," + e
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	return merged
}
