package vfs

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unionstack/unionstack/graph/graphtest"
	"github.com/unionstack/unionstack/internal/testenv"
)

// BenchmarkCopyTree copies a tree of 200 small files and a 4 MiB file
// with CopyTree and, in the same run, with GNU `cp -a` (the peer), and
// reports the time of each and vfs's time as a ratio to cp's.
func BenchmarkCopyTree(b *testing.B) {
	cp := testenv.NeedCommand(b, "cp")
	src := filepath.Join(b.TempDir(), "src")
	entries := []graphtest.Entry{graphtest.File("big", strings.Repeat("x", 4<<20), 0o644)}
	for i := 0; i < 200; i++ {
		entries = append(entries, graphtest.File(fmt.Sprintf("d%02d/f%d", i%20, i), strings.Repeat("y", 2000), 0o644))
	}
	graphtest.WriteTree(b, src, entries...)
	scratch := b.TempDir()
	var ours, peer time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := CopyTree(context.Background(), src, filepath.Join(scratch, fmt.Sprint("vfs", i))); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		start = time.Now()
		if out, err := exec.Command(cp, "-a", src, filepath.Join(scratch, fmt.Sprint("cp", i))).CombinedOutput(); err != nil {
			b.Fatalf("cp -a: %v: %s", err, out)
		}
		peer += time.Since(start)
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "vfs-ns/op")
	b.ReportMetric(float64(peer.Nanoseconds())/float64(b.N), "cp-ns/op")
	b.ReportMetric(float64(ours)/float64(peer), "vfs/cp")
}
