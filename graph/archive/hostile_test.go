package archive

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/unionstack/unionstack/internal/testenv"
)

// paxTar builds a tar whose one entry has the raw PAX records given (so
// that names the Go writer refuses, like ones with NUL, can be made).
func paxTar(records map[string]string, name string) []byte {
	var pax bytes.Buffer
	for k, v := range records {
		rec := " " + k + "=" + v + "\n"
		n := len(rec)
		for {
			s := strconv.Itoa(n) + rec
			if len(s) == n {
				pax.WriteString(s)
				break
			}
			n = len(strconv.Itoa(n) + rec)
		}
	}
	var out bytes.Buffer
	out.Write(ustarHeader("PaxHeaders/x", 'x', int64(pax.Len())))
	out.Write(pax.Bytes())
	out.Write(make([]byte, (512-pax.Len()%512)%512))
	out.Write(ustarHeader(name, '0', 0))
	out.Write(make([]byte, 1024))
	return out.Bytes()
}

// ustarHeader is a raw ustar header block.
func ustarHeader(name string, typ byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], "00000000000\x00")
	b[156] = typ
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// TestApplyHostile feeds tars that try to escape the root: each must be
// refused with an error naming the entry, leave the sibling dir outside
// untouched and the root removable.
func TestApplyHostile(t *testing.T) {
	testenv.NeedRoot(t)
	type tc struct {
		name  string
		setup func(t *testing.T, s sandbox) []byte // the layer
		entry string                               // named in the error
	}
	long := strings.Repeat("d/", 2100) + "f"
	cases := []tc{
		{"dotdot", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, fileE("../outside/x", "x", 0o644))
		}, "../outside/x"},
		{"dotdot inside name", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, dirE("a/", 0o755), fileE("a/../../outside/x", "x", 0o644))
		}, "a/../../outside/x"},
		{"absolute", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, fileE(filepath.Join(s.outside, "x"), "x", 0o644))
		}, "outside/x"},
		{"planted absolute symlink", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, symE("evil", s.outside), fileE("evil/x", "x", 0o644))
		}, "evil/x"},
		{"planted relative symlink", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, symE("evil", "../outside"), fileE("evil/x", "x", 0o644))
		}, "evil/x"},
		{"planted symlink inside root", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, dirE("real/", 0o755), symE("alias", "real"), fileE("alias/x", "x", 0o644))
		}, "alias/x"},
		{"dir replaced by symlink", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, dirE("d/", 0o755), symE("d", s.outside), fileE("d/x", "x", 0o644))
		}, "d/x"},
		{"planted symlink deep", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, dirE("a/", 0o755), symE("a/b", "../../outside"), dirE("a/b/c/", 0o755))
		}, "a/b/c/"},
		{"whiteout through symlink", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, symE("evil", s.outside), fileE("evil/.wh.sentinel", "", 0))
		}, "evil/.wh.sentinel"},
		{"opaque through symlink", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, symE("evil", s.outside), fileE("evil/.wh..wh..opq", "", 0))
		}, "evil/.wh..wh..opq"},
		{"hard link to planted symlink", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, symE("evil", s.outside), linkE("alias", "evil"), fileE("alias/x", "x", 0o644))
		}, "alias/x"},
		{"hard link dotdot", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, linkE("x", "../outside/sentinel"))
		}, "x"},
		{"hard link absolute", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, linkE("x", filepath.Join(s.outside, "sentinel")))
		}, "x"},
		{"hard link through planted symlink", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, symE("evil", s.outside), linkE("x", "evil/sentinel"))
		}, "x"},
		{"hard link to missing target", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, linkE("x", "nowhere"))
		}, "x"},
		{"lower symlink climbing out", func(t *testing.T, s sandbox) []byte {
			if err := os.Symlink("../outside", filepath.Join(s.root, "lowerlink")); err != nil {
				t.Fatal(err)
			}
			return tarOf(t, fileE("lowerlink/x", "x", 0o644))
		}, "lowerlink/x"},
		{"lower absolute symlink stays inside", func(t *testing.T, s sandbox) []byte {
			if err := os.Symlink(s.outside, filepath.Join(s.root, "abslink")); err != nil {
				t.Fatal(err)
			}
			return tarOf(t, fileE("abslink/x", "x", 0o644))
		}, "abslink/x"},
		{"NUL in name", func(t *testing.T, s sandbox) []byte {
			return paxTar(map[string]string{"path": "ok\x00/../../outside/x"}, "plain")
		}, ""},
		{"NUL in link target", func(t *testing.T, s sandbox) []byte {
			return paxTar(map[string]string{"linkpath": "../outside/sentinel\x00"}, "plain")
		}, ""},
		{"oversized PAX header", func(t *testing.T, s sandbox) []byte {
			return paxTar(map[string]string{"SCHILY.xattr.user.big": strings.Repeat("x", 1<<20+10)}, "big")
		}, ""},
		{"name too long", func(t *testing.T, s sandbox) []byte {
			return tarOf(t, fileE(long, "x", 0o644))
		}, long},
		{"truncated content", func(t *testing.T, s sandbox) []byte {
			b := tarOf(t, fileE("ok", "fine", 0o644), fileE("cut", strings.Repeat("c", 5000), 0o644))
			return b[:len(b)-1024-3000]
		}, "cut"},
		{"truncated header", func(t *testing.T, s sandbox) []byte {
			b := tarOf(t, fileE("ok", "fine", 0o644), fileE("next", "n", 0o644))
			return b[:2048+100]
		}, "ok"},
		{"corrupt gzip", func(t *testing.T, s sandbox) []byte {
			b := compress(t, tarOf(t, fileE("f", strings.Repeat("gzip ", 20000), 0o644)), Gzip)
			for i := 40; i < 60; i++ {
				b[i] ^= 0x5a
			}
			return b
		}, ""},
		{"corrupt zstd", func(t *testing.T, s sandbox) []byte {
			b := compress(t, tarOf(t, fileE("f", strings.Repeat("zstd ", 20000), 0o644)), Zstd)
			for i := 20; i < 40; i++ {
				b[i] ^= 0x5a
			}
			return b
		}, ""},
		{"truncated gzip", func(t *testing.T, s sandbox) []byte {
			b := compress(t, tarOf(t, fileE("f", strings.Repeat("gzip ", 20000), 0o644)), Gzip)
			return b[:len(b)-30]
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSandbox(t)
			layer := c.setup(t, s)
			_, err := Apply(context.Background(), s.root, bytes.NewReader(layer), ApplyOptions{})
			if err == nil {
				t.Fatalf("hostile layer was accepted")
			}
			t.Logf("refused: %.300s", err)
			if !strings.HasPrefix(err.Error(), "apply layer: ") {
				t.Errorf("error does not say the operation: %v", err)
			}
			if c.entry != "" && !strings.Contains(err.Error(), c.entry) {
				t.Errorf("error does not name entry %q: %.300s", c.entry, err)
			}
			s.checkOutside(t)
		})
	}
}

// TestApplyLowerSymlink: a lower layer's absolute symlink on the way to an
// entry is followed as the container sees it, inside the root.
func TestApplyLowerSymlink(t *testing.T) {
	testenv.NeedRoot(t)
	s := newSandbox(t)
	apply(t, s.root, tarOf(t, dirE("usr/", 0o755), dirE("usr/lib/", 0o755), symE("lib", "/usr/lib")), ApplyOptions{})
	// A new layer goes through the symlink of the layer below.
	apply(t, s.root, tarOf(t, fileE("lib/libx.so", "x", 0o644)), ApplyOptions{})
	if b, err := os.ReadFile(filepath.Join(s.root, "usr/lib/libx.so")); err != nil || string(b) != "x" {
		t.Errorf("usr/lib/libx.so: %q %v", b, err)
	}
	s.checkOutside(t)
}
