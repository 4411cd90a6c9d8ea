package fsbench

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/unionstack/unionstack/internal/testenv"
)

// benchScale is the default scale of the Go benchmarks (10 MiB, 500 files
// walked, 100 created and unlinked): quick with -benchtime=1x. Override
// with $UNIONSTACK_FSBENCH_SCALE.
const benchScale = 0.01

// benchTimer drives the benchmark timer and a stopwatch together.
type benchTimer struct {
	b  *testing.B
	sw *Stopwatch
}

func (t benchTimer) Start() { t.sw.Start(); t.b.StartTimer() }
func (t benchTimer) Stop()  { t.b.StopTimer(); t.sw.Stop() }

// BenchmarkFS runs every workload on every filesystem
// (BenchmarkFS/<workload>/<fs>) on fresh branches and a fresh mount per
// iteration. Each non-overlay sub-benchmark also runs the workload on
// kernel overlayfs, untimed, and reports ratio-vs-overlay (overlay time /
// fs time: higher is better, 1 = as fast as the kernel).
func BenchmarkFS(b *testing.B) {
	testenv.NeedRoot(b)
	scale := benchScale
	if s := os.Getenv("UNIONSTACK_FSBENCH_SCALE"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			b.Fatalf("UNIONSTACK_FSBENCH_SCALE=%q: %v", s, err)
		}
		scale = v
	}
	sz, err := ForScale(scale)
	if err != nil {
		b.Fatal(err)
	}
	filesystems := []FS{OverlayFS{}, NewFuseOverlayFS(), NewUnionFSFuse(), ourFS()}
	for _, w := range Workloads {
		b.Run(w.Name, func(b *testing.B) {
			for _, fs := range filesystems {
				b.Run(fs.Name(), func(b *testing.B) { benchWorkload(b, fs, w, sz) })
			}
		})
	}
}

// benchWorkload times w on fs for b.N iterations and reports the ratio to
// overlay measured in the same iterations.
func benchWorkload(b *testing.B, fs FS, w Workload, sz Sizes) {
	b.StopTimer()
	err := fs.Available()
	testenv.Need(b, err == nil, fs.Name()+": "+errString(err))
	testenv.Need(b, OverlayFS{}.Available() == nil, "kernel overlayfs (the baseline)")
	dir := b.TempDir()
	var ovl, mine Stopwatch
	for i := 0; i < b.N; i++ {
		if fs.Name() != Overlay {
			once(b, OverlayFS{}, filepath.Join(dir, "overlay"), w, sz, &ovl)
		}
		once(b, fs, filepath.Join(dir, fs.Name()), w, sz, benchTimer{b, &mine})
	}
	if fs.Name() == Overlay {
		ovl = mine
	}
	if mine.Elapsed > 0 {
		b.ReportMetric(float64(ovl.Elapsed)/float64(mine.Elapsed), "ratio-vs-overlay")
	}
}

// once builds fresh branches in dir, runs w on fs timed through t and
// removes dir.
func once(b *testing.B, fs FS, dir string, w Workload, sz Sizes, t Timer) {
	b.Helper()
	ctx := context.Background()
	defer func() {
		if err := removeScratch(dir); err != nil {
			b.Error(err)
		}
	}()
	br, err := NewBranches(ctx, dir, sz)
	if err != nil {
		b.Fatal(err)
	}
	if err := RunWorkload(ctx, fs, br, w, sz, t); err != nil {
		b.Fatalf("%s on %s: %v", w.Name, fs.Name(), err)
	}
}

// errString is err's message, or "" for nil.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
