package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestApplyCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, t.TempDir(), bytes.NewReader(tarOf(t, fileE("f", "x", 0o644))), ApplyOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled apply: %v", err)
	}
}

func TestApplyBadOptions(t *testing.T) {
	layer := tarOf(t, fileE("f", "x", 0o644))
	if _, err := Apply(context.Background(), filepath.Join(t.TempDir(), "missing"), bytes.NewReader(layer), ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing root: %v", err)
	}
	if _, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(layer), ApplyOptions{Format: 9}); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestReassembleMissingFile(t *testing.T) {
	testenv.NeedRoot(t)
	root := t.TempDir()
	var meta bytes.Buffer
	apply(t, root, tarOf(t, fileE("f", "content", 0o644)), ApplyOptions{TarSplit: &meta})
	os.Remove(filepath.Join(root, "f"))
	err := Reassemble(context.Background(), root, &meta, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "f") {
		t.Errorf("reassemble without the file: %v", err)
	}
}

func TestWriteLayerRefuses(t *testing.T) {
	testenv.NeedRoot(t)
	if _, err := WriteLayer(context.Background(), t.TempDir(), FormatTree, &bytes.Buffer{}); err == nil {
		t.Error("FormatTree accepted")
	}
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "moved"), 0o755)
	if err := unix.Setxattr(filepath.Join(dir, "moved"), "trusted.overlay.redirect", []byte("/orig"), 0); err != nil {
		t.Fatal(err)
	}
	_, err := WriteLayer(context.Background(), dir, FormatOverlay, &bytes.Buffer{})
	if !errors.Is(err, ErrOverlayFeature) || !strings.Contains(err.Error(), "moved") {
		t.Errorf("redirect dir: %v", err)
	}
}

func TestCompressStreams(t *testing.T) {
	plain := []byte(strings.Repeat("layer data ", 1000))
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		r, got, err := DecompressStream(bytes.NewReader(compress(t, plain, c)))
		if err != nil || got != c {
			t.Fatalf("%s: detected %s, %v", c, got, err)
		}
		var out bytes.Buffer
		if _, err := out.ReadFrom(r); err != nil || !bytes.Equal(out.Bytes(), plain) {
			t.Errorf("%s: round trip differs (%v)", c, err)
		}
		r.Close()
	}
	if _, err := CompressStream(&bytes.Buffer{}, Xz); !errors.Is(err, ErrUnsupportedCompression) {
		t.Errorf("xz compress: %v", err)
	}
}

// The union's own records on the copies of its rw branch (unionfs keeps
// a copy's inode number in trusted.unionfs.ino) are storage metadata:
// a layer written from such a directory leaves them out, and a tar that
// carries one does not set it.
func TestUnionfsXattrsAreNotContent(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "copied")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"trusted.unionfs.ino": "12345678", "user.kept": "yes"} {
		if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if _, err := WriteLayer(context.Background(), dir, FormatAUFS, &out); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&out)
	seen := false
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name != "copied" {
			continue
		}
		seen = true
		if _, ok := h.PAXRecords["SCHILY.xattr.trusted.unionfs.ino"]; ok {
			t.Error("the layer carries trusted.unionfs.ino")
		}
		if h.PAXRecords["SCHILY.xattr.user.kept"] != "yes" {
			t.Errorf("the layer lost user.kept: %v", h.PAXRecords)
		}
	}
	if !seen {
		t.Fatal("copied is not in the layer")
	}
	f := fileE("f", "x", 0o644)
	f.h.PAXRecords = map[string]string{"SCHILY.xattr.trusted.unionfs.ino": "12345678"}
	root := t.TempDir()
	apply(t, root, tarOf(t, f), ApplyOptions{})
	if _, err := unix.Lgetxattr(filepath.Join(root, "f"), "trusted.unionfs.ino", nil); err != unix.ENODATA {
		t.Errorf("applied trusted.unionfs.ino: %v", err)
	}
}
