package fsbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultScratchParent is where Run makes its scratch directory when
// Config.Scratch is empty.
const DefaultScratchParent = "/var/tmp"

// ErrMount marks a workload that failed because the union did not mount.
var ErrMount = errors.New("mount failed")

// Config is one comparison run.
type Config struct {
	// Scratch is the directory in which Run makes (and at the end removes)
	// its own scratch directory; DefaultScratchParent when empty. It
	// holds the branches of every filesystem until the end (about
	// 1.3 GiB + 0.5 GiB per round each at scale 1), unless free space
	// runs short (see makeRoom).
	Scratch string
	// FS are the filesystems to compare, in report order. Ratios are
	// relative to the one named Overlay.
	FS []FS
	// Sizes are the workload sizes (see ForScale).
	Sizes Sizes
	// Workloads to run, in order; all of Workloads when nil.
	Workloads []Workload
	// Verify mounts each union once more after the workloads, checks their
	// effects and compares the merged trees of all filesystems.
	Verify bool
	// Progress, if not nil, receives a line per step.
	Progress io.Writer
}

// Run builds fresh, identical branches for each available filesystem in
// turn, runs every workload on its own fresh mount and returns the
// measurements. Unavailable filesystems are skipped and failures of one
// filesystem are recorded in its result; the error is for the run as a
// whole (not root, no scratch dir, cancelled ctx, cleanup failed). Every
// mount and the scratch directory are gone when Run returns.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench fs: needs root (mounts, drop_caches)")
	}
	if cfg.Workloads == nil {
		cfg.Workloads = Workloads
	}
	parent := cfg.Scratch
	if parent == "" {
		parent = DefaultScratchParent
	}
	scratch, err := os.MkdirTemp(parent, "unionctl-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench fs: scratch dir: %w", err)
	}
	defer func() {
		if cerr := removeScratch(scratch); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	rep = &Report{Sizes: cfg.Sizes, Scratch: scratch, Workloads: cfg.Workloads, CPUs: runtime.NumCPU(), LoadAvg: loadAvg()}
	var kept []string // branches of the filesystems run so far
	for _, fs := range cfg.FS {
		res := &FSResult{Name: fs.Name(), Times: map[string]time.Duration{}, Runs: map[string][]time.Duration{}, Errors: map[string]string{}}
		rep.Results = append(rep.Results, res)
		if err := fs.Available(); err != nil {
			res.Skipped = err.Error()
			progress(cfg.Progress, "%s: skipped: %v", res.Name, err)
			continue
		}
		removed, roomErr := makeRoom(scratch, cfg.Sizes.scratchBytes(), kept, cfg.Progress, res.Name)
		if roomErr != nil {
			return rep, fmt.Errorf("bench fs: %w", roomErr)
		}
		if removed {
			kept = nil
		}
		dir := filepath.Join(scratch, fs.Name())
		runFS(ctx, cfg, fs, dir, res)
		kept = append(kept, dir)
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("bench fs: %w", err)
		}
	}
	if cfg.Verify {
		rep.compareTrees()
	}
	return rep, nil
}

// runFS runs every workload of cfg on fs with branches built in dir.
// It leaves dir in place (unmounted) for Run to remove at the end: on an
// ext4 without a journal, inode allocation skips the inodes freed in the
// last minutes one by one, so removing one filesystem's 60000 files
// before the next filesystem runs would slow that one's creates several
// times over.
func runFS(ctx context.Context, cfg Config, fs FS, dir string, res *FSResult) {
	name := fs.Name()
	start := time.Now()
	progress(cfg.Progress, "%s: building branches in %s", name, dir)
	b, err := NewBranches(ctx, dir, cfg.Sizes)
	if err != nil {
		res.Err = err.Error()
		return
	}
	progress(cfg.Progress, "%s: branches built in %s", name, fmtDuration(time.Since(start)))
	workloadFailed := false
	for _, w := range cfg.Workloads {
		for r := range cfg.Sizes.rounds() {
			var sw Stopwatch
			var mem *memSample
			if w.Name == memoryWorkload {
				mem = &memSample{}
			}
			err, umountErr := runWorkload(ctx, fs, b, w, cfg.Sizes, r, &sw, mem)
			if ctx.Err() != nil {
				return
			}
			if err == nil && mem != nil && mem.after > res.RSSAfterWalk {
				res.RSSAtMount, res.RSSAfterWalk = mem.atMount, mem.after
			}
			if err == nil {
				res.Runs[w.Name] = append(res.Runs[w.Name], sw.Elapsed)
				if best, ok := res.Times[w.Name]; !ok || sw.Elapsed < best {
					res.Times[w.Name] = sw.Elapsed
				}
				progress(cfg.Progress, "%s: %s%s: %s", name, w.Label(cfg.Sizes), roundSuffix(cfg.Sizes, r), fmtDuration(sw.Elapsed))
			} else {
				workloadFailed = true
			}
			// A failed unmount after a workload that ran right keeps the
			// time but is still a failure.
			if err := errors.Join(err, umountErr); err != nil {
				res.Errors[w.Name] = err.Error()
				progress(cfg.Progress, "%s: %s%s: error: %v", name, w.Label(cfg.Sizes), roundSuffix(cfg.Sizes, r), err)
			}
			if errors.Is(err, ErrMount) {
				res.Err = err.Error()
				return
			}
		}
	}
	if cfg.Verify {
		if workloadFailed {
			res.VerifyErr = "not verified: a workload failed"
		} else if err := verifyFS(ctx, fs, b, cfg.Sizes, res); err != nil {
			res.VerifyErr = err.Error()
		}
	}
	if err := unmountUnder(dir); err != nil && res.Err == "" {
		res.Err = err.Error()
	}
}

// RunWorkload mounts fs on b, drops the caches, runs the first round of w
// (timed through t) and unmounts. A mount failure wraps ErrMount.
func RunWorkload(ctx context.Context, fs FS, b Branches, w Workload, sz Sizes, t Timer) error {
	runErr, umountErr := runWorkload(ctx, fs, b, w, sz, 0, t, nil)
	return errors.Join(runErr, umountErr)
}

// memSample is the resident memory of a FUSE daemon, in bytes, once
// mounted and after a workload.
type memSample struct{ atMount, after int64 }

// runWorkload is RunWorkload with the workload's error and the unmount's
// error apart: a workload that ran right has a valid time even when the
// unmount after it failed. With mem not nil, it also reads the memory of
// the mount's daemon, if it has one.
func runWorkload(ctx context.Context, fs FS, b Branches, w Workload, sz Sizes, r int, t Timer, mem *memSample) (runErr, umountErr error) {
	m, err := fs.Mount(ctx, b)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", w.Name, ErrMount, err), nil
	}
	defer func() {
		if err := m.Unmount(); err != nil {
			umountErr = fmt.Errorf("%s: after the workload: %w", w.Name, err)
		}
	}()
	pid := 0
	if d, ok := m.(Daemon); ok && mem != nil {
		pid = d.DaemonPid()
	}
	if pid > 0 {
		if mem.atMount, err = residentBytes(pid); err != nil {
			return fmt.Errorf("%s: %w", w.Name, err), nil
		}
	}
	if err := DropCaches(); err != nil {
		return fmt.Errorf("%s: %w", w.Name, err), nil
	}
	if err := w.Run(ctx, b.Mnt, sz, r, t); err != nil {
		return err, nil
	}
	if pid > 0 {
		if mem.after, err = residentBytes(pid); err != nil {
			return fmt.Errorf("%s: %w", w.Name, err), nil
		}
	}
	return nil, nil
}

// verifyFS mounts fs once more and checks the workloads' effects.
func verifyFS(ctx context.Context, fs FS, b Branches, sz Sizes, res *FSResult) (err error) {
	m, err := fs.Mount(ctx, b)
	if err != nil {
		return fmt.Errorf("verify: %w: %v", ErrMount, err)
	}
	defer func() {
		if uerr := m.Unmount(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("verify: %w", uerr))
		}
	}()
	tree, err := Verify(b, sz)
	res.tree = tree
	res.Verified = err == nil
	return err
}

// makeRoom removes the branches of the filesystems run so far (kept) when
// scratch has less free space than 5/4 of need, what the next filesystem,
// next, takes. Keeping them is better (see runFS), but not at the price of
// a full disk. It reports whether it removed them.
func makeRoom(scratch string, need int64, kept []string, w io.Writer, next string) (bool, error) {
	if len(kept) == 0 {
		return false, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(scratch, &st); err != nil {
		return false, fmt.Errorf("free space of %s: %w", scratch, err)
	}
	free := int64(st.Bavail) * st.Bsize
	if free >= need/4*5 {
		return false, nil
	}
	progress(w, "%s: %s free in %s, short of the %s it needs: removing the branches of the filesystems before it (its creates may be slower: ext4 without a journal skips recently freed inodes)",
		next, humanBytes(free), scratch, humanBytes(need/4*5))
	for _, dir := range kept {
		if err := removeScratch(dir); err != nil {
			return false, err
		}
	}
	return true, nil
}

// removeScratch unmounts whatever is still mounted under dir (lazily if
// need be) and removes dir.
func removeScratch(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return fmt.Errorf("%w; not removed", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clean up %s: %w", dir, err)
	}
	return nil
}

// unmountUnder unmounts whatever is mounted under dir (lazily if need
// be); it fails if something is still mounted there afterwards.
func unmountUnder(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return fmt.Errorf("clean up %s: %w", dir, err)
	}
	var errs []error
	for _, m := range mounts {
		if err := unmount(m); err != nil {
			errs = append(errs, err)
		}
	}
	if left, _ := mountsUnder(dir); len(left) > 0 {
		errs = append(errs, fmt.Errorf("clean up %s: still mounted: %v", dir, left))
	}
	return errors.Join(errs...)
}

// progress writes one progress line to w, if w is not nil.
func progress(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// loadAvg returns the 1, 5 and 15 minute load averages of the host.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// roundSuffix names round r in progress lines when there is more than one.
func roundSuffix(sz Sizes, r int) string {
	if sz.rounds() == 1 {
		return ""
	}
	return fmt.Sprintf(" (round %d/%d)", r+1, sz.rounds())
}
