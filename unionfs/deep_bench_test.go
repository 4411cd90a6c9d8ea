package unionfs

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// deepLayers writes n branch dirs under dir, each adding 20 files
// (f<layer>-<j>) to the root, and returns them top first.
func deepLayers(b *testing.B, dir string, n int) []Branch {
	b.Helper()
	brs := make([]Branch, n)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("l%03d", i))
		if err := os.Mkdir(p, 0755); err != nil {
			b.Fatal(err)
		}
		for j := range 20 {
			if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("f%d-%d", i, j)), []byte("x"), 0644); err != nil {
				b.Fatal(err)
			}
		}
		brs[n-1-i] = Branch{Path: p, Mode: RO}
	}
	return brs
}

// coldStats stats every name through srv and returns the time taken;
// before each round the kernel's cached entries of the names are dropped
// (untimed), so every stat is a lookup the union answers.
func coldStats(b *testing.B, srv *Server, names []string) time.Duration {
	root := srv.u.root.EmbeddedInode()
	for _, name := range names {
		_ = root.NotifyEntry(name)
	}
	var st syscall.Stat_t
	s := time.Now()
	for _, name := range names {
		_ = syscall.Stat(filepath.Join(srv.mountpoint, name), &st)
	}
	return time.Since(s)
}

// BenchmarkDeepLookup times cold lookups (kernel caches dropped before
// each round) of hits in the bottom and the top branch and of misses
// through read-only unions of 100 and 500 branches, each against the
// same lookups through a union of one branch in the same run.
func BenchmarkDeepLookup(b *testing.B) {
	needFUSE(b)
	dir := b.TempDir()
	layers := filepath.Join(dir, "layers")
	if err := os.Mkdir(layers, 0755); err != nil {
		b.Fatal(err)
	}
	stack := deepLayers(b, layers, 500) // stack[500-k:] is the union of the bottom k
	// Layers are old when mounted: a directory written moments ago and
	// not yet committed to the journal is many times slower to list.
	syscall.Sync()
	mount := func(b *testing.B, brs []Branch) *Server {
		mnt, err := os.MkdirTemp(dir, "mnt")
		if err != nil {
			b.Fatal(err)
		}
		srv, err := Mount(brs, mnt, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = srv.Unmount() })
		return srv
	}
	namesFor := func(k int) []string {
		var names []string
		for j := range 20 {
			names = append(names, fmt.Sprintf("f0-%d", j), fmt.Sprintf("f%d-%d", k-1, j), fmt.Sprintf("missing-%d", j))
		}
		return names
	}
	for _, k := range []int{1, 100, 500} {
		b.Run(fmt.Sprintf("%d-branches", k), func(b *testing.B) {
			deep := mount(b, stack[500-k:])
			one := mount(b, stack[499:])
			deepNames, oneNames := namesFor(k), namesFor(1)
			var tDeep, tOne time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				tDeep += coldStats(b, deep, deepNames)
				tOne += coldStats(b, one, oneNames)
				b.StartTimer()
			}
			b.StopTimer()
			n := float64(b.N * len(deepNames))
			b.ReportMetric(float64(tDeep.Nanoseconds())/n, "ns/lookup")
			b.ReportMetric(float64(tOne.Nanoseconds())/n, "1-branch-ns/lookup")
			b.ReportMetric(float64(tDeep)/float64(tOne), "x-vs-1-branch")
		})
	}
}
