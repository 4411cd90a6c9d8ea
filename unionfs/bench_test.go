package unionfs

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/internal/testenv"
)

// benchPair is the same rw-over-ro branch layout mounted twice: through
// kernel overlayfs (the peer) and through unionfs.
type benchPair struct {
	overlay, union string
	lower          [2]string // lower dir of each mount, for fixtures
	srv            *Server   // the unionfs mount
}

// newBenchPair mounts both; fill is called on each lower dir first.
func newBenchPair(b *testing.B, fill func(lower string)) *benchPair {
	b.Helper()
	return newBenchPairOpts(b, Options{Passthrough: true}, fill)
}

// newBenchPairOpts is newBenchPair with the unionfs mount's options.
func newBenchPairOpts(b *testing.B, opts Options, fill func(lower string)) *benchPair {
	b.Helper()
	needFUSE(b)
	bp := &benchPair{}
	for i, kind := range []string{"overlay", "unionfs"} {
		dir := b.TempDir()
		lo, up, work, mnt := filepath.Join(dir, "lo"), filepath.Join(dir, "up"), filepath.Join(dir, "work"), filepath.Join(dir, "mnt")
		for _, d := range []string{lo, up, work, mnt} {
			if err := os.Mkdir(d, 0755); err != nil {
				b.Fatal(err)
			}
		}
		fill(lo)
		bp.lower[i] = lo
		if kind == "overlay" {
			out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", "lowerdir="+lo+",upperdir="+up+",workdir="+work, mnt).CombinedOutput()
			testenv.Need(b, err == nil, fmt.Sprintf("kernel overlayfs mount: %v %s", err, out))
			b.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
			bp.overlay = mnt
			continue
		}
		srv, err := Mount([]Branch{{Path: up, Mode: RW}, {Path: lo, Mode: RO}}, mnt, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = srv.Unmount() })
		bp.union = mnt
		bp.srv = srv
	}
	return bp
}

// compare times op on both mounts b.N times and reports the unionfs
// speed as a ratio to kernel overlayfs (1.0 = as fast).
func (bp *benchPair) compare(b *testing.B, op func(b *testing.B, mnt string, i int)) {
	bp.compareWithSetup(b, nil, op)
}

// compareWithSetup is compare with an untimed setup(lowerDir, i) before
// each timed op.
func (bp *benchPair) compareWithSetup(b *testing.B, setup func(lower string, i int), op func(b *testing.B, mnt string, i int)) {
	var tOv, tUn time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k, m := range []string{bp.overlay, bp.union} {
			if setup != nil {
				setup(bp.lower[k], i)
				if k == 1 {
					bp.srv.Revalidate() // the lower branch changed from outside
				}
			}
			s := time.Now()
			op(b, m, i)
			if k == 0 {
				tOv += time.Since(s)
			} else {
				tUn += time.Since(s)
			}
		}
	}
	b.StopTimer()
	reportPair(b, tOv, tUn)
}

// reportPair reports the unionfs time un as a ratio to the kernel
// overlayfs time ov, and both per op.
func reportPair(b *testing.B, ov, un time.Duration) {
	b.ReportMetric(float64(ov)/float64(un), "ratio-to-overlay")
	b.ReportMetric(float64(un.Nanoseconds())/float64(b.N), "unionfs-ns/op")
	b.ReportMetric(float64(ov.Nanoseconds())/float64(b.N), "overlay-ns/op")
}

func makeFile(b *testing.B, p string, size int) {
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for size > 0 {
		n := min(size, len(buf))
		if _, err := f.Write(buf[:n]); err != nil {
			b.Fatal(err)
		}
		size -= n
	}
	f.Close()
}

// readWhole reads the file p to its end through buf.
func readWhole(b *testing.B, p string, buf []byte) {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyBuffer(io.Discard, f, buf); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSeqReadLower reads a 128 MiB lower file sequentially.
func BenchmarkSeqReadLower(b *testing.B) {
	bp := newBenchPair(b, func(lo string) { makeFile(b, filepath.Join(lo, "big"), 128<<20) })
	buf := make([]byte, 1<<20)
	bp.compare(b, func(b *testing.B, mnt string, _ int) { readWhole(b, filepath.Join(mnt, "big"), buf) })
}

// BenchmarkSeqReadUpper reads a 128 MiB file of the rw branch.
func BenchmarkSeqReadUpper(b *testing.B) {
	bp := newBenchPair(b, func(string) {})
	for _, m := range []string{bp.overlay, bp.union} {
		makeFile(b, filepath.Join(m, "big"), 128<<20)
	}
	buf := make([]byte, 1<<20)
	bp.compare(b, func(b *testing.B, mnt string, _ int) { readWhole(b, filepath.Join(mnt, "big"), buf) })
}

// BenchmarkStatWalk lstat()s a lower tree of 5000 files (warm after the
// first round).
func BenchmarkStatWalk(b *testing.B) {
	bp := newBenchPair(b, func(lo string) {
		for d := 0; d < 50; d++ {
			dir := filepath.Join(lo, fmt.Sprintf("d%02d", d))
			_ = os.Mkdir(dir, 0755)
			for f := 0; f < 100; f++ {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), nil, 0644); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	bp.compare(b, func(b *testing.B, mnt string, _ int) {
		n := 0
		err := filepath.WalkDir(mnt, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if _, err := os.Lstat(p); err != nil {
				return err
			}
			n++
			return nil
		})
		if err != nil || n != 5051 {
			b.Fatalf("walk: %d entries, %v", n, err)
		}
	})
}

// BenchmarkRoundTrip fstats an open lower file 1000 times with the
// unionfs attribute cache off, so each fstat is exactly one GETATTR
// request (a path stat would be two: the mount root's attributes time
// out too, and default_permissions checks them on the walk): the cost of
// the cheapest FUSE round trip, next to the same fstat on kernel
// overlayfs. It is the floor under every workload that needs requests
// per operation: a create takes three the caller waits for (GETATTR of
// the parent, whose attributes the previous create invalidated, as
// default_permissions checks them; LOOKUP of the new name; CREATE) and a
// RELEASE after it, and an unlink three, so their ratios to overlayfs
// stay well under this one's.
//
// A third peer is a bare go-fuse server mounted with the same options,
// whose one file answers GETATTR with constants: ratio-to-gofuse is how
// close the union's request is to the library's own floor (1.0: the
// union's work costs nothing next to the round trip).
func BenchmarkRoundTrip(b *testing.B) {
	opts := Options{Passthrough: true, AttrTimeout: -1}
	bp := newBenchPairOpts(b, opts, func(lo string) {
		if err := os.WriteFile(filepath.Join(lo, "f"), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	})
	peers := []struct {
		mnt string
		t   time.Duration
	}{{mnt: bp.overlay}, {mnt: bp.union}, {mnt: mountBareFile(b, opts)}}
	b.ResetTimer()
	for range b.N {
		for i := range peers {
			s := time.Now()
			fstatMany(b, filepath.Join(peers[i].mnt, "f"), 1000)
			peers[i].t += time.Since(s)
		}
	}
	b.StopTimer()
	un, bare := peers[1].t, peers[2].t
	reportPair(b, peers[0].t, un)
	b.ReportMetric(float64(bare)/float64(un), "ratio-to-gofuse")
	b.ReportMetric(float64(bare.Nanoseconds())/float64(b.N), "gofuse-ns/op")
}

// fstatMany opens p and fstats it n times.
func fstatMany(b *testing.B, p string, n int) {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	for range n {
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			b.Fatal(err)
		}
	}
}

// bareRoot is the root of the bare go-fuse peer of BenchmarkRoundTrip:
// a directory holding one empty file, f.
type bareRoot struct{ fs.Inode }

// bareFile is f: its attributes are constants and it opens without a
// handle, so a request costs go-fuse's serving and nothing else.
type bareFile struct{ fs.Inode }

var (
	_ fs.NodeOnAdder   = (*bareRoot)(nil)
	_ fs.NodeGetattrer = (*bareFile)(nil)
	_ fs.NodeOpener    = (*bareFile)(nil)
)

// OnAdd adds f.
func (r *bareRoot) OnAdd(ctx context.Context) {
	f := r.NewPersistentInode(ctx, &bareFile{}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild("f", f, false)
}

// Getattr answers an empty file of mode 0644.
func (f *bareFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o644
	out.Nlink = 1
	out.Ino = 2
	return 0
}

// Open opens without a handle.
func (f *bareFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, 0
}

// mountBareFile mounts a bareRoot with the go-fuse options a union with
// opts gets, and returns its mountpoint; it is unmounted at cleanup.
func mountBareFile(b *testing.B, opts Options) string {
	b.Helper()
	mnt := b.TempDir()
	srv, err := fs.Mount(mnt, &bareRoot{}, fuseOptions(withDefaults(opts)))
	if err != nil {
		b.Fatalf("mount bare go-fuse peer: %v", err)
	}
	b.Cleanup(func() { _ = srv.Unmount() })
	return mnt
}

// BenchmarkCreateUnlink creates then removes 1000 files.
func BenchmarkCreateUnlink(b *testing.B) {
	bp := newBenchPair(b, func(string) {})
	bp.compare(b, func(b *testing.B, mnt string, i int) {
		dir := filepath.Join(mnt, fmt.Sprintf("r%d", i))
		if err := os.Mkdir(dir, 0755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 1000; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", f)), nil, 0644); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkCopyUp opens a fresh 64 MiB lower file for writing.
func BenchmarkCopyUp(b *testing.B) {
	bp := newBenchPair(b, func(string) {})
	setup := func(lower string, i int) {
		makeFile(b, filepath.Join(lower, fmt.Sprintf("c%d", i)), 64<<20)
	}
	bp.compareWithSetup(b, setup, func(b *testing.B, mnt string, i int) {
		f, err := os.OpenFile(filepath.Join(mnt, fmt.Sprintf("c%d", i)), os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	})
}
