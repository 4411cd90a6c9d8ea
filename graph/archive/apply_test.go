package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

// capV2 is a security.capability value (VFS_CAP_REVISION_2,
// cap_net_bind_service effective+permitted).
var capV2 = string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

func allTypesTar(t testing.TB) []byte { return tarOf(t, allTypesTarEnts()...) }

func allTypesTarEnts() []ent {
	f := fileE("bin/ping", "ping!", 0o4755)
	f.h.Uid, f.h.Gid = 1000, 1001
	f.h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": capV2, "SCHILY.xattr.user.note": "hi"}
	d := dirE("bin/", 0o2751)
	d.h.Uid = 7
	d.h.PAXRecords = map[string]string{"SCHILY.xattr.user.dir": "d"}
	sticky := dirE("tmp/", 0o1777)
	return []ent{
		d, f,
		linkE("bin/ping6", "bin/ping"),
		symE("bin/sh", "/bin/busybox"),
		sticky,
		fifoE("tmp/fifo"),
		dirE("dev/", 0o755),
		devE("dev/null", tar.TypeChar, 1, 3),
		devE("dev/loop9", tar.TypeBlock, 7, 9),
		fileE("etc/empty", "", 0o600),
		fileE("etc/world", "w", 0o666),
		fileE("etc/ro", "r", 0o444),
		fileE("etc/exe", "x", 0o755),
	}
}

func TestApplyAllTypes(t *testing.T) {
	testenv.NeedRoot(t)
	s := newSandbox(t)
	plain := allTypesTar(t)
	res := apply(t, s.root, plain, ApplyOptions{})
	if got, want := res.DiffID.String(), sha(plain); got != want {
		t.Errorf("DiffID %s, want %s", got, want)
	}
	if res.Size != int64(len(plain)) || res.Compression != Uncompressed {
		t.Errorf("result %+v", res)
	}
	st := func(rel string) *unix.Stat_t {
		t.Helper()
		st, err := lstat(filepath.Join(s.root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	ping := st("bin/ping")
	if ping.Mode != unix.S_IFREG|0o4755 || ping.Uid != 1000 || ping.Gid != 1001 || ping.Nlink != 2 {
		t.Errorf("bin/ping: mode %o uid %d gid %d nlink %d", ping.Mode, ping.Uid, ping.Gid, ping.Nlink)
	}
	if ping.Mtim.Nsec != 123456789 || ping.Mtim.Sec != t0.Unix() {
		t.Errorf("bin/ping mtime %v", ping.Mtim)
	}
	if v, err := getXattr(filepath.Join(s.root, "bin/ping"), "security.capability"); err != nil || string(v) != capV2 {
		t.Errorf("security.capability = %x, %v", v, err)
	}
	if v, err := getXattr(filepath.Join(s.root, "bin"), "user.dir"); err != nil || string(v) != "d" {
		t.Errorf("user.dir on bin = %q, %v", v, err)
	}
	if bin := st("bin"); bin.Mode != unix.S_IFDIR|0o2751 || bin.Uid != 7 || bin.Mtim.Sec != t0.Unix() {
		t.Errorf("bin: mode %o uid %d mtime %v", bin.Mode, bin.Uid, bin.Mtim)
	}
	if tmp := st("tmp"); tmp.Mode != unix.S_IFDIR|0o1777 {
		t.Errorf("tmp mode %o", tmp.Mode)
	}
	if p6 := st("bin/ping6"); p6.Ino != ping.Ino {
		t.Error("bin/ping6 is not a hard link of bin/ping")
	}
	if target, err := os.Readlink(filepath.Join(s.root, "bin/sh")); err != nil || target != "/bin/busybox" {
		t.Errorf("bin/sh -> %q, %v", target, err)
	}
	if f := st("tmp/fifo"); f.Mode != unix.S_IFIFO|0o640 {
		t.Errorf("fifo mode %o", f.Mode)
	}
	if n := st("dev/null"); n.Mode != unix.S_IFCHR|0o660 || unix.Major(n.Rdev) != 1 || unix.Minor(n.Rdev) != 3 {
		t.Errorf("dev/null mode %o rdev %d", n.Mode, n.Rdev)
	}
	if n := st("dev/loop9"); n.Mode != unix.S_IFBLK|0o660 || unix.Minor(n.Rdev) != 9 {
		t.Errorf("dev/loop9 mode %o rdev %d", n.Mode, n.Rdev)
	}
	for rel, mode := range map[string]uint32{"etc/world": 0o666, "etc/ro": 0o444, "etc/exe": 0o755, "etc/empty": 0o600} {
		if m := st(rel).Mode; m != unix.S_IFREG|mode {
			t.Errorf("%s: mode %o, want %o", rel, m, mode)
		}
	}
	s.checkOutside(t)
}

func TestApplyCompressions(t *testing.T) {
	testenv.NeedRoot(t)
	plain := allTypesTar(t)
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			s := newSandbox(t)
			res := apply(t, s.root, compress(t, plain, c), ApplyOptions{})
			if res.Compression != c || res.DiffID.String() != sha(plain) {
				t.Errorf("got %s %s, want %s %s", res.Compression, res.DiffID, c, sha(plain))
			}
		})
	}
	t.Run("bzip2", func(t *testing.T) {
		bz := testenv.NeedCommand(t, "bzip2")
		s := newSandbox(t)
		in := filepath.Join(t.TempDir(), "l.tar")
		os.WriteFile(in, plain, 0o644)
		if out, err := runCmd(bz, in); err != nil {
			t.Fatalf("bzip2: %v %s", err, out)
		}
		b, _ := os.ReadFile(in + ".bz2")
		res := apply(t, s.root, b, ApplyOptions{})
		if res.Compression != Bzip2 || res.DiffID.String() != sha(plain) {
			t.Errorf("got %s %s", res.Compression, res.DiffID)
		}
	})
	t.Run("xz refused", func(t *testing.T) {
		s := newSandbox(t)
		_, err := Apply(context.Background(), s.root, bytes.NewReader([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2}), ApplyOptions{})
		if !errors.Is(err, ErrUnsupportedCompression) || !strings.Contains(err.Error(), "xz") {
			t.Errorf("xz: %v", err)
		}
	})
	t.Run("trailing padding hashed", func(t *testing.T) {
		s := newSandbox(t)
		padded := append(append([]byte{}, plain...), make([]byte, 10240)...)
		res := apply(t, s.root, compress(t, padded, Gzip), ApplyOptions{})
		if res.DiffID.String() != sha(padded) || res.Size != int64(len(padded)) {
			t.Errorf("DiffID %s size %d, want %s %d", res.DiffID, res.Size, sha(padded), len(padded))
		}
	})
}

func TestApplySparse(t *testing.T) {
	testenv.NeedRoot(t)
	s := newSandbox(t)
	body := make([]byte, 8<<20)
	copy(body[1<<20:], "data in the middle")
	copy(body[len(body)-5:], "tail!")
	apply(t, s.root, tarOf(t, fileE("sparse", string(body), 0o644)), ApplyOptions{})
	p := filepath.Join(s.root, "sparse")
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("content differs (%v)", err)
	}
	st, _ := lstat(p)
	if st.Size != int64(len(body)) || st.Blocks*512 > 64<<10 {
		t.Errorf("size %d, %d bytes allocated: holes were not kept", st.Size, st.Blocks*512)
	}
}

func TestApplyWhiteoutsTree(t *testing.T) {
	testenv.NeedRoot(t)
	s := newSandbox(t)
	apply(t, s.root, tarOf(t,
		dirE("a/", 0o755), fileE("a/keep", "k", 0o644), fileE("a/gone", "g", 0o644),
		dirE("a/sub/", 0o755), fileE("a/sub/deep", "d", 0o644),
		dirE("o/", 0o755), fileE("o/lower1", "1", 0o644), dirE("o/d/", 0o755), fileE("o/d/lower2", "2", 0o644),
		dirE("o/lowerdir/", 0o755), fileE("o/lowerdir/lower3", "3", 0o644),
		dirE("gonedir/", 0o755), fileE("gonedir/x", "x", 0o644),
	), ApplyOptions{})
	apply(t, s.root, tarOf(t,
		fileE("a/.wh.gone", "", 0),
		fileE("a/.wh.sub", "", 0),
		fileE(".wh.gonedir", "", 0),
		fileE(".wh.nothing-there", "", 0),
		fileE("new/.wh.nothing", "", 0),
		fileE("o/new-before", "n", 0o644),
		fileE("o/lowerdir/own", "n", 0o644), // below a lower dir with no entry of its own
		dirE("o/d/", 0o700),
		fileE("o/.wh..wh..opq", "", 0),
		fileE("o/d/new-after", "n", 0o644),
		fileE("a/same", "s", 0o644),
		fileE("repl/x", "pending", 0o644), fileE("repl", "now a file", 0o644), // dir replaced by a file
		fileE("a/.wh.same", "", 0), // same layer: stays
		fileE(".wh..wh.plnk", "", 0),
	), ApplyOptions{})
	want := map[string]bool{
		"a/keep": true, "a/gone": false, "a/sub": false, "gonedir": false,
		"o/new-before": true, "o/lower1": false, "o/d": true, "o/d/lower2": false, "o/d/new-after": true,
		"o/lowerdir/own": true, "o/lowerdir/lower3": false, "repl": true, "repl/x": false,
		"a/same": true, "a/.wh.same": false, ".wh..wh.plnk": false, "new": true,
	}
	for rel, exists := range want {
		_, err := os.Lstat(filepath.Join(s.root, rel))
		if (err == nil) != exists {
			t.Errorf("%s: exists=%v, want %v", rel, err == nil, exists)
		}
	}
	if st, _ := lstat(filepath.Join(s.root, "o/d")); st == nil || st.Mode&0o777 != 0o700 {
		t.Errorf("o/d metadata not updated")
	}
	s.checkOutside(t)
}

func TestApplyWhiteoutsAUFS(t *testing.T) {
	testenv.NeedRoot(t)
	s := newSandbox(t)
	apply(t, s.root, tarOf(t,
		dirE("d/", 0o755), fileE("d/.wh.gone", "", 0), fileE("d/.wh..wh..opq", "", 0),
		fileE(".wh..wh.aufs", "", 0), fileE("d/f", "f", 0o644),
	), ApplyOptions{Format: FormatAUFS})
	for rel, exists := range map[string]bool{"d/.wh.gone": true, "d/.wh..wh..opq": true, ".wh..wh.aufs": false, "d/f": true} {
		st, err := lstat(filepath.Join(s.root, rel))
		if (err == nil) != exists || (exists && st.Mode&unix.S_IFMT != unix.S_IFREG) {
			t.Errorf("%s: exists=%v, want %v", rel, err == nil, exists)
		}
	}
}

// TestApplyWhiteoutsOverlay writes an overlay layer and checks what the
// kernel's overlayfs shows when it is mounted over the lower layer.
func TestApplyWhiteoutsOverlay(t *testing.T) {
	testenv.NeedRoot(t)
	for _, f := range []Format{FormatOverlay, FormatOverlayUser} {
		t.Run(f.String(), func(t *testing.T) {
			lower, upper := t.TempDir(), t.TempDir()
			apply(t, lower, tarOf(t,
				dirE("d/", 0o755), fileE("d/gone", "g", 0o644), fileE("d/keep", "k", 0o644),
				dirE("o/", 0o755), fileE("o/old", "o", 0o644), fileE("target", "T", 0o640),
				dirE("sub/", 0o711), fileE("sub/t2", "T2", 0o600),
			), ApplyOptions{Format: f})
			apply(t, upper, tarOf(t,
				fileE("d/.wh.gone", "", 0),
				dirE("o/", 0o755), fileE("o/.wh..wh..opq", "", 0), fileE("o/new", "n", 0o644),
				linkE("hl", "target"),
				linkE("hl2", "sub/t2"),
			), ApplyOptions{Format: f, Parents: []string{lower}})
			st, err := lstat(filepath.Join(upper, "d/gone"))
			if err != nil || !isWhiteoutDev(st) {
				t.Fatalf("d/gone is not a 0/0 char device in the upper: %v", err)
			}
			if v, err := getXattr(filepath.Join(upper, "o"), opaqueXattrOf(f)); err != nil || string(v) != "y" {
				t.Fatalf("o not opaque: %q %v", v, err)
			}
			if st, _ := lstat(filepath.Join(upper, "sub")); st == nil || st.Mode&0o7777 != 0o711 {
				t.Errorf("copied-up parent sub has not the lower's mode")
			}
			var extra []string
			if f == FormatOverlayUser {
				extra = append(extra, "userxattr")
			}
			merged := mountOverlay(t, lower, upper, extra...)
			for rel, exists := range map[string]bool{"d/gone": false, "d/keep": true, "o/old": false, "o/new": true, "hl": true, "hl2": true} {
				_, err := os.Lstat(filepath.Join(merged, rel))
				if (err == nil) != exists {
					t.Errorf("merged %s: exists=%v, want %v", rel, err == nil, exists)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(merged, "hl")); string(b) != "T" {
				t.Errorf("hl content %q", b)
			}
			a, _ := lstat(filepath.Join(upper, "hl"))
			b, _ := lstat(filepath.Join(upper, "target"))
			if a == nil || b == nil || a.Ino != b.Ino {
				t.Errorf("hl is not linked to a copied-up target in the upper")
			}
		})
	}
}

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
