package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// The benchmark layer: ~100 MB of deterministic text-like data, many
// small files in a few hundred directories and a handful of large files,
// built once per test binary run and cached in a temp dir removed by
// TestMain.
var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
	benchRaw  int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// textCorpus returns n bytes of pseudo-random text: lines of words drawn
// from a fixed vocabulary (compresses about 3:1, like source or docs).
func textCorpus(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	vocab := make([][]byte, 4096)
	for i := range vocab {
		w := make([]byte, 2+r.IntN(9))
		for j := range w {
			w[j] = byte('a' + r.IntN(26))
		}
		vocab[i] = w
	}
	out := make([]byte, 0, n+64)
	line := 0
	for len(out) < n {
		// a skewed choice: frequent words are frequent
		w := vocab[r.IntN(1+r.IntN(len(vocab)))]
		out = append(out, w...)
		line += len(w) + 1
		if line > 60+r.IntN(40) {
			out = append(out, '\n')
			line = 0
		} else {
			out = append(out, ' ')
		}
	}
	return out[:n]
}

// buildBenchLayer writes the plain tar of the benchmark layer.
func buildBenchLayer(w io.Writer) (int64, error) {
	const total = 100 << 20
	corpus := textCorpus(total)
	r := rand.New(rand.NewPCG(3, 4))
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	mt := time.Unix(1700000000, 0)
	hdr := func(h *tar.Header, body []byte) error {
		h.ModTime, h.Format = mt, tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	off := 0
	take := func(n int) []byte { b := corpus[off : off+n]; off += n; return b }
	// 6 large files, ~8 MB each
	if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "big/", Mode: 0o755}, nil); err != nil {
		return 0, err
	}
	for i := range 6 {
		body := take(7<<20 + r.IntN(2<<20))
		if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("big/blob%d.txt", i), Mode: 0o644, Size: int64(len(body))}, body); err != nil {
			return 0, err
		}
	}
	// many small files in 300 dirs
	for d := 0; off < total-64<<10; d++ {
		dir := fmt.Sprintf("usr/share/pkg%03d/", d)
		if d%300 == 0 && d > 0 {
			dir = fmt.Sprintf("usr/lib/mod%03d/", d)
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755}, nil); err != nil {
			return 0, err
		}
		for f := 0; f < 40 && off < total-64<<10; f++ {
			body := take(200 + r.IntN(8000))
			name := fmt.Sprintf("%sfile%02d.txt", dir, f)
			if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body); err != nil {
				return 0, err
			}
			if f == 0 {
				if err := hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: dir + "link", Linkname: "file00.txt", Mode: 0o777}, nil); err != nil {
					return 0, err
				}
			}
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// benchLayer returns the benchmark layer compressed with c.
func benchLayer(b *testing.B, c Compression) []byte {
	b.Helper()
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "unionstack-archive-bench-")
		if benchErr != nil {
			return
		}
		var plain bytes.Buffer
		if benchRaw, benchErr = buildBenchLayer(&plain); benchErr != nil {
			return
		}
		for _, c := range []Compression{Gzip, Zstd} {
			f, err := os.Create(filepath.Join(benchDir, "layer.tar."+c.String()))
			if err != nil {
				benchErr = err
				return
			}
			zw, _ := CompressStream(f, c)
			_, err = zw.Write(plain.Bytes())
			if err == nil {
				err = zw.Close()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				benchErr = err
				return
			}
		}
	})
	if benchErr != nil {
		b.Fatalf("build benchmark layer: %v", benchErr)
	}
	data, err := os.ReadFile(filepath.Join(benchDir, "layer.tar."+c.String()))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// stdlibUnpack is the peer: the straightforward unpack with the standard
// library (compress/gzip; klauspost zstd, as the standard library has
// none) and archive/tar, hashing the stream for the DiffID as Apply does.
func stdlibUnpack(dst string, r io.Reader, c Compression) ([]byte, error) {
	var zr io.Reader
	switch c {
	case Gzip:
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		zr = g
	case Zstd:
		z, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		defer z.Close()
		zr = z
	default:
		zr = r
	}
	h := sha256.New()
	tee := io.TeeReader(zr, h)
	tr := tar.NewReader(tee)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dst, hdr.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(hdr.Mode)); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(hdr.Mode))
			if err != nil {
				return nil, err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return nil, err
			}
			if err := f.Close(); err != nil {
				return nil, err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, p); err != nil {
				return nil, err
			}
		case tar.TypeLink:
			if err := os.Link(filepath.Join(dst, hdr.Linkname), p); err != nil {
				return nil, err
			}
		}
		if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeSymlink {
			if err := os.Chmod(p, os.FileMode(hdr.Mode)); err != nil {
				return nil, err
			}
			if err := os.Chtimes(p, hdr.ModTime, hdr.ModTime); err != nil {
				return nil, err
			}
		}
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// quiesce flushes dirty data and pending deletions (with the discard
// mount option, removing the last tree queues much work) so that each
// timed run starts from a quiet file system, whoever ran before.
func quiesce() { unix.Sync() }

func benchApply(b *testing.B, c Compression) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (chown)")
	}
	data := benchLayer(b, c)
	scratch := benchScratch(b)
	// One untimed run of each first, so that neither pays for first
	// touches (page cache, allocator growth) in the measured runs.
	warm := filepath.Join(scratch, "warm")
	for _, f := range []func(string) error{
		func(d string) error {
			_, err := Apply(context.Background(), d, bytes.NewReader(data), ApplyOptions{})
			return err
		},
		func(d string) error { _, err := stdlibUnpack(d, bytes.NewReader(data), c); return err },
	} {
		os.Mkdir(warm, 0o755)
		quiesce()
		if err := f(warm); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
		os.RemoveAll(warm)
	}
	var ours, peer time.Duration
	b.SetBytes(benchRaw)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d1, d2 := filepath.Join(scratch, "ours"), filepath.Join(scratch, "peer")
		os.Mkdir(d1, 0o755)
		os.Mkdir(d2, 0o755)
		runPeer := func() {
			quiesce()
			start := time.Now()
			if _, err := stdlibUnpack(d2, bytes.NewReader(data), c); err != nil {
				b.Fatalf("stdlib unpack: %v", err)
			}
			peer += time.Since(start)
		}
		if i%2 == 1 { // alternate who goes first
			runPeer()
		}
		quiesce()
		b.StartTimer()
		start := time.Now()
		res, err := Apply(context.Background(), d1, bytes.NewReader(data), ApplyOptions{})
		ours += time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatalf("apply: %v", err)
		}
		if res.Size != benchRaw {
			b.Fatalf("applied %d bytes of %d", res.Size, benchRaw)
		}
		if i%2 == 0 {
			runPeer()
		}
		os.RemoveAll(d1)
		os.RemoveAll(d2)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(peer)/float64(ours), "x-vs-stdlib")
	b.ReportMetric(float64(len(data))/float64(benchRaw), "compressed/raw")
}

// benchScratch is where the benchmark unpacks: a tmpfs of its own, so the
// ratio compares the unpackers and not how this machine's disk copes with
// creating and deleting 13k files (on a VM's ext4 that dominates both and
// varies run to run). UNIONSTACK_BENCH_ON_DISK=1 unpacks under TMPDIR
// instead, disk and all.
func benchScratch(b *testing.B) string {
	dir := b.TempDir()
	if os.Getenv("UNIONSTACK_BENCH_ON_DISK") == "1" {
		return dir
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=2g,mode=0755"); err != nil {
		b.Fatalf("mount a tmpfs for the benchmark at %s: %v", dir, err)
	}
	b.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// BenchmarkApplyGzip unpacks the ~100 MB layer, gzip-compressed, and
// reports how many times faster Apply is than compress/gzip + archive/tar
// ("x-vs-stdlib"), both unpacking into a tmpfs (see benchScratch).
func BenchmarkApplyGzip(b *testing.B) { benchApply(b, Gzip) }

// BenchmarkApplyZstd is BenchmarkApplyGzip for a zstd layer (the peer
// uses klauspost's zstd decoder with archive/tar).
func BenchmarkApplyZstd(b *testing.B) { benchApply(b, Zstd) }
