package fsbench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Timer is started and stopped around the measured part of a workload.
type Timer interface {
	Start()
	Stop()
}

// Stopwatch is a Timer that adds up the time between Start and Stop.
type Stopwatch struct {
	start   time.Time
	Elapsed time.Duration
}

// Start starts the stopwatch.
func (s *Stopwatch) Start() { s.start = time.Now() }

// Stop stops the stopwatch and adds the time since Start to Elapsed.
func (s *Stopwatch) Stop() { s.Elapsed += time.Since(s.start) }

// Workload is one measured operation on a freshly mounted union whose
// lower branch was filled by NewBranches.
type Workload struct {
	// Name is the short name used in benchmarks and JSON ("seqread").
	Name string
	// Label describes the workload at the given sizes, for tables.
	Label func(sz Sizes) string
	// Run performs round r (0 <= r < sz.Repeat) of the workload on the
	// union mounted at mnt, calling t.Start and t.Stop around the measured
	// part.
	Run func(ctx context.Context, mnt string, sz Sizes, r int, t Timer) error
}

// Workloads are the benchmark's workloads, in report order. Each runs on
// its own fresh mount with the page cache dropped just before; the effects
// of one (files created, unlinked, copied up) do not touch the others'
// paths, so they can run one after the other on the same branches.
var Workloads = []Workload{
	{"seqread", func(sz Sizes) string { return "seq read " + humanBytes(sz.SeqBytes) }, seqRead},
	{"randread", func(sz Sizes) string { return fmt.Sprintf("4k rand read x%d", sz.RandReads) }, randRead},
	{"stat-cold", func(sz Sizes) string { return fmt.Sprintf("stat walk %d cold", sz.StatFiles) }, statCold},
	{"stat-warm", func(sz Sizes) string { return fmt.Sprintf("stat walk %d warm", sz.StatFiles) }, statWarm},
	{"create", func(sz Sizes) string { return fmt.Sprintf("create %d files", sz.CreateFiles) }, createFiles},
	{"unlink", func(sz Sizes) string { return fmt.Sprintf("unlink %d lower", sz.UnlinkFiles) }, unlinkFiles},
	{"copyup", func(sz Sizes) string { return "copy-up " + humanBytes(sz.CopyUpBytes) }, copyUp},
}

// memoryWorkload is the workload after which Run reads the resident
// memory of a FUSE daemon: the warm stat walk, after which the daemon
// holds what it keeps for every name of the tree the kernel caches.
const memoryWorkload = "stat-warm"

// WorkloadByName returns the workload called name.
func WorkloadByName(name string) (Workload, bool) {
	for _, w := range Workloads {
		if w.Name == name {
			return w, true
		}
	}
	return Workload{}, false
}

// checkEvery is how many operations a loop does between looks at ctx.
const checkEvery = 256

// seqRead reads the big file from start to end in 1 MiB reads.
func seqRead(ctx context.Context, mnt string, sz Sizes, r int, t Timer) error {
	path := filepath.Join(mnt, bigFile)
	buf := make([]byte, seqReadBlock)
	var total int64
	t.Start()
	f, err := os.Open(path)
	if err != nil {
		t.Stop()
		return fmt.Errorf("seq read: %w", err)
	}
	defer f.Close()
	for i := 0; ; i++ {
		n, err := f.Read(buf)
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Stop()
			return fmt.Errorf("seq read %s at %d: %w", path, total, err)
		}
		if i%checkEvery == 0 && ctx.Err() != nil {
			t.Stop()
			return ctx.Err()
		}
	}
	t.Stop()
	if total != sz.SeqBytes {
		return fmt.Errorf("seq read %s: read %d bytes, want %d", path, total, sz.SeqBytes)
	}
	return nil
}

// randRead does 4 KiB preads at random 4 KiB-aligned offsets of the big
// file; the offsets are the same in every run.
func randRead(ctx context.Context, mnt string, sz Sizes, r int, t Timer) error {
	path := filepath.Join(mnt, bigFile)
	rng := rand.New(rand.NewPCG(4096, uint64(sz.SeqBytes)))
	offsets := make([]int64, sz.RandReads)
	for i := range offsets {
		offsets[i] = rng.Int64N(sz.SeqBytes/randReadBlock) * randReadBlock
	}
	buf := make([]byte, randReadBlock)
	t.Start()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Stop()
		return fmt.Errorf("rand read open %s: %w", path, err)
	}
	defer unix.Close(fd)
	for i, off := range offsets {
		n, err := unix.Pread(fd, buf, off)
		if err != nil || n != randReadBlock {
			t.Stop()
			return fmt.Errorf("rand read %s at %d: got %d bytes: %v", path, off, n, err)
		}
		if i%checkEvery == 0 && ctx.Err() != nil {
			t.Stop()
			return ctx.Err()
		}
	}
	t.Stop()
	return nil
}

// statCold walks the stat tree (readdir and lstat of every entry) on a
// cold mount.
func statCold(ctx context.Context, mnt string, sz Sizes, r int, t Timer) error {
	t.Start()
	n, err := statWalk(ctx, filepath.Join(mnt, treeDir))
	t.Stop()
	return checkWalk(n, err, sz)
}

// statWarm walks the stat tree once to warm the caches, then again,
// measured.
func statWarm(ctx context.Context, mnt string, sz Sizes, r int, t Timer) error {
	n, err := statWalk(ctx, filepath.Join(mnt, treeDir))
	if err := checkWalk(n, err, sz); err != nil {
		return err
	}
	t.Start()
	n, err = statWalk(ctx, filepath.Join(mnt, treeDir))
	t.Stop()
	return checkWalk(n, err, sz)
}

// checkWalk checks a stat walk saw every file of the tree.
func checkWalk(files int, err error, sz Sizes) error {
	if err != nil {
		return fmt.Errorf("stat walk: %w", err)
	}
	if files != sz.StatFiles {
		return fmt.Errorf("stat walk: saw %d files, want %d", files, sz.StatFiles)
	}
	return nil
}

// statWalk reads every directory under dir and lstats every entry,
// returning the number of non-directories seen.
func statWalk(ctx context.Context, dir string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("readdir %s: %w", dir, err)
	}
	files := 0
	var st unix.Stat_t
	for _, name := range names {
		path := filepath.Join(dir, name)
		if err := unix.Lstat(path, &st); err != nil {
			return files, &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			files++
			continue
		}
		n, err := statWalk(ctx, path)
		files += n
		if err != nil {
			return files, err
		}
	}
	return files, nil
}

// createFiles creates empty files in a new directory of the union (they
// land in the upper branch).
func createFiles(ctx context.Context, mnt string, sz Sizes, r int, t Timer) error {
	dir := filepath.Join(mnt, roundPath(createDir, r))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	paths := make([]string, sz.CreateFiles)
	for i := range paths {
		paths[i] = filepath.Join(dir, fileName(i))
	}
	t.Start()
	defer t.Stop()
	for i, p := range paths {
		if err := touch(p); err != nil {
			return fmt.Errorf("create: %w", err)
		}
		if i%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// unlinkFiles unlinks, through the union, files that live in the lower
// branch (each leaves a whiteout in the upper).
func unlinkFiles(ctx context.Context, mnt string, sz Sizes, r int, t Timer) error {
	paths := make([]string, sz.UnlinkFiles)
	for i := range paths {
		paths[i] = filepath.Join(mnt, roundPath(unlinkDir, r), fileName(i))
	}
	t.Start()
	defer t.Stop()
	for i, p := range paths {
		if err := unix.Unlink(p); err != nil {
			return fmt.Errorf("unlink %s: %w", p, err)
		}
		if i%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// copyUp opens a lower file O_WRONLY|O_APPEND, appends one byte and
// fsyncs: the whole file is copied up to the upper branch.
func copyUp(ctx context.Context, mnt string, sz Sizes, r int, t Timer) error {
	path := filepath.Join(mnt, roundPath(copyUpFile, r))
	if err := ctx.Err(); err != nil {
		return err
	}
	t.Start()
	defer t.Stop()
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("copy-up open %s: %w", path, err)
	}
	if _, err := unix.Write(fd, []byte{appendByte}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("copy-up write %s: %w", path, err)
	}
	if err := unix.Fsync(fd); err != nil {
		unix.Close(fd)
		return fmt.Errorf("copy-up fsync %s: %w", path, err)
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("copy-up close %s: %w", path, err)
	}
	return nil
}
