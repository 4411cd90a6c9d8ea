package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

// roundTrip applies layer with tar-split metadata and checks that
// Reassemble gives back the uncompressed tar byte for byte.
func roundTrip(t *testing.T, root string, layer, plain []byte, f Format) {
	t.Helper()
	var meta bytes.Buffer
	res, err := Apply(context.Background(), root, bytes.NewReader(layer), ApplyOptions{Format: f, TarSplit: &meta})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	var out bytes.Buffer
	if err := Reassemble(context.Background(), root, &meta, &out); err != nil {
		t.Fatalf("reassemble: %v", err)
	}
	if sha(out.Bytes()) != res.DiffID.String() || !bytes.Equal(out.Bytes(), plain) {
		t.Fatalf("reassembled tar differs: %d bytes %s, want %d bytes %s", out.Len(), sha(out.Bytes()), len(plain), res.DiffID)
	}
}

func TestTarSplitAllTypes(t *testing.T) {
	testenv.NeedRoot(t)
	big := strings.Repeat("0123456789abcdef", 70000)
	gnu := &tar.Header{Typeflag: tar.TypeReg, Name: "gnu-long-name-" + strings.Repeat("n", 150), Size: 3, Mode: 0o644, Format: tar.FormatGNU}
	ustar := &tar.Header{Typeflag: tar.TypeReg, Name: "ustar", Size: 2, Mode: 0o644, Format: tar.FormatUSTAR}
	plain := append(tarOf(t,
		append([]ent{
			dirE("./", 0o755),
			fileE("big", big, 0o644),
			{gnu, []byte("gnu")},
			{ustar, []byte("us")},
			fileE("d/.wh.gone", "", 0),
			fileE("nonutf8-\xff\xfe", "x", 0o644),
		}, entsOf(allTypesTarEnts())...)...,
	), make([]byte, 4096)...) // extra trailing padding, as some tools write
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		for _, f := range []Format{FormatTree, FormatAUFS, FormatOverlay} {
			t.Run(c.String()+"/"+f.String(), func(t *testing.T) {
				roundTrip(t, t.TempDir(), compress(t, plain, c), plain, f)
			})
		}
	}
}

func entsOf(e []ent) []ent { return e }

// TestTarSplitGNUTar reassembles tars made by Debian's GNU tar, with
// xattrs, hard links, a fifo, a sparse file and long names.
func TestTarSplitGNUTar(t *testing.T) {
	testenv.NeedRoot(t)
	tarBin := testenv.NeedCommand(t, "tar")
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "etc/deep/"+strings.Repeat("x", 120)), 0o755))
	must(os.WriteFile(filepath.Join(src, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
	must(os.Link(filepath.Join(src, "etc/passwd"), filepath.Join(src, "etc/passwd-link")))
	must(os.Symlink("passwd", filepath.Join(src, "etc/sym")))
	must(unix.Mkfifo(filepath.Join(src, "etc/fifo"), 0o600))
	must(unix.Setxattr(filepath.Join(src, "etc/passwd"), "user.k", []byte("v"), 0))
	f, err := os.Create(filepath.Join(src, "sparse"))
	must(err)
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("tail"), 16<<20)
	f.Close()
	for _, flags := range [][]string{{"--format=gnu", "-S"}, {"--format=posix", "--xattrs", "-S"}, {"--format=ustar"}} {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "l.tar")
			args := append(append([]string{"-C", src, "-cf", out}, flags...), ".")
			if flags[0] == "--format=ustar" {
				args = append(append([]string{"-C", src, "-cf", out}, flags...), "etc/passwd", "etc/passwd-link", "etc/sym", "etc/fifo", "sparse")
			}
			if b, err := runCmd(tarBin, args...); err != nil {
				t.Fatalf("tar: %v %s", err, b)
			}
			plain, err := os.ReadFile(out)
			must(err)
			root := t.TempDir()
			roundTrip(t, root, compress(t, plain, Gzip), plain, FormatTree)
			b, err := os.ReadFile(filepath.Join(root, "sparse"))
			if err != nil || len(b) != 16<<20+4 || string(b[16<<20:]) != "tail" {
				t.Errorf("sparse file content wrong (%v)", err)
			}
			if st, err := lstat(filepath.Join(root, "sparse")); err != nil || st.Blocks*512 > 1<<20 {
				t.Errorf("sparse file: holes not kept (%v)", err)
			}
		})
	}
}
