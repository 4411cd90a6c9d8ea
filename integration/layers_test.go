package integration

import (
	"archive/tar"
	"bytes"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/unionstack/unionstack/internal/testenv"
	"github.com/unionstack/unionstack/internal/testimage"
)

// sameTreeImageName names the image of the same-tree tests.
const sameTreeImageName = "unionstack.test/sametree:latest"

// sameTreeImage is testimage's busybox image with two more layers that hold
// what it lacks (see extraLayers), written as an OCI layout.
func sameTreeImage(t testing.TB) (layoutDir string, img *testimage.Image) {
	t.Helper()
	bb, err := os.ReadFile(testimage.BusyboxPath)
	testenv.Need(t, err == nil, "busybox-static not installed ("+testimage.BusyboxPath+")")
	layers := append(testimage.BusyboxLayers(bb), extraLayers()...)
	img = testimage.NewImage(sameTreeImageName, layers, testimage.RunConfig)
	layoutDir = t.TempDir()
	if err := img.WriteOCILayout(layoutDir, testimage.Gzip, testimage.Zstd); err != nil {
		t.Fatalf("write OCI layout: %v", err)
	}
	return layoutDir, img
}

// layerWriter writes a layer tar entry by entry with the times it is told
// (nanoseconds kept: PAX format), unlike testimage.TarBuilder, which gives
// every entry the same time.
type layerWriter struct {
	buf bytes.Buffer
	tw  *tar.Writer
}

func newLayerWriter() *layerWriter {
	w := &layerWriter{}
	w.tw = tar.NewWriter(&w.buf)
	return w
}

// at is a time of the extra layers: base plus seconds and nanoseconds, so
// every entry has its own mtime with a sub-second part.
func at(sec, nsec int) time.Time {
	return time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC).Add(time.Duration(sec)*time.Second + time.Duration(nsec))
}

// hdr adds an entry; x are "name", "value" pairs of xattrs.
func (w *layerWriter) hdr(h tar.Header, data []byte, x ...string) *layerWriter {
	h.Format = tar.FormatPAX
	if h.Typeflag == tar.TypeReg {
		h.Size = int64(len(data))
	}
	for i := 0; i+1 < len(x); i += 2 {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+x[i]] = x[i+1]
	}
	if err := w.tw.WriteHeader(&h); err != nil {
		panic("layer " + h.Name + ": " + err.Error())
	}
	if len(data) > 0 {
		if _, err := w.tw.Write(data); err != nil {
			panic("layer " + h.Name + ": " + err.Error())
		}
	}
	return w
}

func (w *layerWriter) dir(name string, mode int64, uid, gid int, mt time.Time, x ...string) *layerWriter {
	return w.hdr(tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid, ModTime: mt}, nil, x...)
}

func (w *layerWriter) file(name string, mode int64, uid, gid int, mt time.Time, data []byte, x ...string) *layerWriter {
	return w.hdr(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: uid, Gid: gid, ModTime: mt}, data, x...)
}

func (w *layerWriter) link(name, target string, mt time.Time) *layerWriter {
	return w.hdr(tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: mt}, nil)
}

func (w *layerWriter) symlink(name, target string, mt time.Time) *layerWriter {
	return w.hdr(tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: mt}, nil)
}

func (w *layerWriter) dev(typ byte, name string, mode int64, major, minor int64, mt time.Time) *layerWriter {
	return w.hdr(tar.Header{Typeflag: typ, Name: name, Mode: mode, Devmajor: major, Devminor: minor, ModTime: mt}, nil)
}

// whiteout deletes dir/name of the layers below.
func (w *layerWriter) whiteout(dir, name string, mt time.Time) *layerWriter {
	return w.file(dir+"/.wh."+name, 0o644, 0, 0, mt, nil)
}

// opaque hides everything below dir of the layers below.
func (w *layerWriter) opaque(dir string, mt time.Time) *layerWriter {
	return w.file(dir+"/.wh..wh..opq", 0o644, 0, 0, mt, nil)
}

func (w *layerWriter) layer() testimage.Layer {
	if err := w.tw.Close(); err != nil {
		panic(err)
	}
	data := w.buf.Bytes()
	return testimage.Layer{Tar: data, DiffID: digest.FromBytes(data)}
}

// pseudoRandom returns n deterministic bytes.
func pseudoRandom(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// extraLayers are layers 3 and 4 of the same-tree image, for what the
// busybox test image does not hold: distinct mtimes with nanoseconds on
// files and directories, a char and a block device, a directory xattr and
// a trusted.* xattr, a setgid directory, setuid+setgid file, a hard-link
// group of three, a dangling and a directory symlink, an empty file of
// odd owners, a large file, type changes (symlink -> file, fifo ->
// directory), and then a file and a directory moved (deleted at the old
// path, added at the new), a changed file, and a second opaque directory.
func extraLayers() []testimage.Layer {
	l3 := newLayerWriter().
		dir("dev", 0o755, 0, 0, at(1, 1)).
		dev(tar.TypeChar, "dev/null", 0o666, 1, 3, at(2, 2)).
		dev(tar.TypeBlock, "dev/loop9", 0o660, 7, 9, at(3, 3)).
		dir("etc", 0o755, 0, 0, at(4, 4)).
		file("etc/localtime", 0o644, 0, 0, at(5, 5), []byte("UTC0\n")). // was a symlink
		dir("run", 0o755, 0, 0, at(6, 6)).
		dir("run/fifo", 0o711, 0, 0, at(7, 7)). // was a fifo
		file("run/fifo/inside", 0o600, 0, 0, at(8, 8), []byte("a dir where a fifo was\n")).
		dir("srv", 0o755, 0, 0, at(9, 9), "user.dir", "srv").
		file("srv/empty", 0o640, 1234, 5678, at(10, 10), nil).
		symlink("srv/dangling", "../nowhere/at/all", at(11, 11)).
		symlink("srv/web", "www", at(12, 12)).
		hdr(tar.Header{Typeflag: tar.TypeFifo, Name: "srv/pipe", Mode: 0o620, Uid: 1000, Gid: 1000, ModTime: at(13, 13)}, nil).
		dir("srv/www", 0o2775, 0, 33, at(14, 14)).
		file("srv/www/index.html", 0o644, 33, 33, at(15, 15), []byte("<h1>layer 3</h1>\n"), "user.mime", "text/html", "trusted.origin", "layer3").
		file("srv/www/big", 0o644, 0, 0, at(16, 16), pseudoRandom(1<<20+123, 3)).
		file("srv/www/cgi", 0o6755, 0, 0, at(17, 17), []byte("#!/bin/sh\necho cgi\n"), "trusted.origin", "layer3", "user.role", "cgi").
		file("srv/www/h1", 0o644, 0, 0, at(18, 18), []byte("three names, one file\n")).
		link("srv/www/h2", "srv/www/h1", at(18, 18)).
		link("srv/www/h3", "srv/www/h1", at(18, 18)).
		dir("var", 0o755, 0, 0, at(19, 19)).
		dir("var/lib", 0o755, 0, 0, at(20, 20)).
		dir("var/lib/app", 0o750, 0, 0, at(21, 21)).
		file("var/lib/app/a", 0o644, 0, 0, at(22, 22), []byte("a\n")).
		dir("var/lib/app/sub", 0o755, 0, 0, at(23, 23)).
		file("var/lib/app/sub/b", 0o644, 0, 0, at(24, 24), []byte("b\n")).
		layer()
	l4 := newLayerWriter().
		dir("etc", 0o755, 0, 0, at(100, 100)).
		whiteout("etc", "group", at(101, 101)).
		file("etc/group.moved", 0o644, 0, 0, at(102, 102), []byte("root:x:0:\n")). // moved file
		dir("srv", 0o755, 0, 0, at(103, 103), "user.dir", "srv-changed").
		dir("srv/www", 0o2775, 0, 33, at(104, 104)).
		file("srv/www/index.html", 0o664, 33, 33, at(105, 105), []byte("<h1>layer 4</h1>\n"), "user.mime", "text/html; charset=utf-8").
		dir("usr", 0o755, 0, 0, at(106, 106)).
		dir("usr/share", 0o755, 0, 0, at(107, 107)).
		whiteout("usr/share", "doc", at(108, 108)).
		dir("usr/share/documentation", 0o755, 0, 0, at(109, 109)). // moved directory
		file("usr/share/documentation/readme", 0o644, 1000, 1000, at(110, 110), []byte("hard linked twice\n")).
		link("usr/share/documentation/readme.link", "usr/share/documentation/readme", at(110, 110)).
		dir("var", 0o755, 0, 0, at(111, 111)).
		dir("var/lib", 0o755, 0, 0, at(112, 112)).
		dir("var/lib/app", 0o755, 0, 0, at(113, 113)).
		opaque("var/lib/app", at(114, 114)).
		file("var/lib/app/fresh", 0o644, 0, 0, at(115, 115), []byte("only this after the opaque layer\n")).
		layer()
	return []testimage.Layer{l3, l4}
}
