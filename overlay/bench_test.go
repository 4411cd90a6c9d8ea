package overlay

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/archive"
)

// rootfsFiles is a small root filesystem: 200 files in a few directories.
func rootfsFiles() map[string]string {
	files := map[string]string{}
	for i := range 100 {
		files[fmt.Sprintf("bin/tool%d", i)] = "#!/bin/sh\necho tool\n"
	}
	for i := range 60 {
		files[fmt.Sprintf("usr/lib/lib%d.so", i)] = string(make([]byte, 4096))
	}
	for i := range 40 {
		files[fmt.Sprintf("etc/conf%d", i)] = "key=value\n"
	}
	return files
}

// benchChain makes a chain of depth committed layers: the rootfs, then
// layers of two files each. It returns the top layer's name.
func benchChain(b *testing.B, d graph.Driver, depth int) string {
	b.Helper()
	commitLayer(b, d, "layer0", "", rootfsFiles())
	parent := "layer0"
	for i := 1; i < depth; i++ {
		name := fmt.Sprintf("layer%d", i)
		commitLayer(b, d, name, parent, map[string]string{
			fmt.Sprintf("var/layer%d", i): name, "etc/conf0": name,
		})
		parent = name
	}
	return parent
}

// BenchmarkPrepareMount prepares a container snapshot on a 10- and a
// 128-layer chain and mounts it. The peer is the bare mount of the same
// mounts (no Prepare): "x-mount-only" says how much Prepare adds.
func BenchmarkPrepareMount(b *testing.B) {
	for _, depth := range []int{10, 128} {
		b.Run(fmt.Sprintf("layers=%d", depth), func(b *testing.B) {
			d, _ := newTestDriver(b, nil)
			ctx := context.Background()
			top := benchChain(b, d, depth)
			peerMounts, err := d.Prepare(ctx, "peer", top)
			if err != nil {
				b.Fatal(err)
			}
			targets := b.TempDir()
			var driverTime, peerTime time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				target := filepath.Join(targets, fmt.Sprint(i))
				peerTarget := target + "-peer"
				b.StopTimer()
				mkdirs(b, target, peerTarget)
				b.StartTimer()

				start := time.Now()
				mounts, err := d.Prepare(ctx, fmt.Sprintf("c%d", i), top)
				if err != nil {
					b.Fatal(err)
				}
				if err := graph.MountAll(mounts, target); err != nil {
					b.Fatal(err)
				}
				driverTime += time.Since(start)

				b.StopTimer()
				start = time.Now()
				if err := graph.MountAll(peerMounts, peerTarget); err != nil {
					b.Fatal(err)
				}
				peerTime += time.Since(start)
				if _, err := os.Stat(filepath.Join(target, "bin/tool1")); err != nil {
					b.Fatal(err)
				}
				unmountBench(b, target, peerTarget)
				if err := d.Remove(ctx, fmt.Sprintf("c%d", i)); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(peerTime.Nanoseconds())/float64(b.N), "mount-only-ns/op")
			b.ReportMetric(float64(driverTime)/float64(peerTime), "x-mount-only")
		})
	}
}

// BenchmarkCommit commits an active snapshot holding one file; the peer
// is Stat of the same snapshot (one metadata read): "x-stat".
func BenchmarkCommit(b *testing.B) {
	d, _ := newTestDriver(b, nil)
	ctx := context.Background()
	commitLayer(b, d, "base", "", rootfsFiles())
	var commitTime, statTime time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		key := fmt.Sprintf("c%d", i)
		if _, err := d.Prepare(ctx, key, "base"); err != nil {
			b.Fatal(err)
		}
		writeFiles(b, layerDir(b, d, key), map[string]string{"etc/new": key})
		start := time.Now()
		if _, err := d.Stat(ctx, key); err != nil {
			b.Fatal(err)
		}
		statTime += time.Since(start)
		b.StartTimer()
		start = time.Now()
		if err := d.Commit(ctx, fmt.Sprintf("layer%d", i), key); err != nil {
			b.Fatal(err)
		}
		commitTime += time.Since(start)
	}
	b.ReportMetric(float64(commitTime)/float64(statTime), "x-stat")
}

// BenchmarkRemove removes a committed layer of 200 files; the peer is
// os.RemoveAll of a copy of the same files: "x-rm".
func BenchmarkRemove(b *testing.B) {
	d, _ := newTestDriver(b, nil)
	ctx := context.Background()
	scratch := b.TempDir()
	var removeTime, rmTime time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		name := fmt.Sprintf("layer%d", i)
		commitLayer(b, d, name, "", rootfsFiles())
		copyDir := filepath.Join(scratch, name)
		writeFiles(b, copyDir, rootfsFiles())
		start := time.Now()
		if err := os.RemoveAll(copyDir); err != nil {
			b.Fatal(err)
		}
		rmTime += time.Since(start)
		b.StartTimer()
		start = time.Now()
		if err := d.Remove(ctx, name); err != nil {
			b.Fatal(err)
		}
		removeTime += time.Since(start)
	}
	b.ReportMetric(float64(removeTime)/float64(rmTime), "x-rm")
}

// BenchmarkDiff1000 writes the layer of a container that changed 1,000
// files, natively (LayerDir's check and WriteLayer of the upper dir) and
// naively (archive.Diff of the mounted parent and container trees), on a
// parent of just those files and on one that also holds 5,000 unchanged
// files (which the naive diff walks twice and the native one never sees).
func BenchmarkDiff1000(b *testing.B) {
	for _, unchanged := range []int{0, 5000} {
		b.Run(fmt.Sprintf("unchanged=%d", unchanged), func(b *testing.B) { benchDiff1000(b, unchanged) })
	}
}

func benchDiff1000(b *testing.B, unchanged int) {
	d, _ := newTestDriver(b, nil)
	ctx := context.Background()
	base := map[string]string{}
	for i := range 1000 {
		base[fmt.Sprintf("d%d/f%d", i%10, i)] = "original content\n"
	}
	rest := map[string]string{}
	for i := range unchanged {
		rest[fmt.Sprintf("usr/share/u%d/f%d", i%50, i)] = "unchanged\n"
	}
	commitLayer(b, d, "base0", "", rest)
	commitLayer(b, d, "base", "base0", base)
	mounts, err := d.Prepare(ctx, "c", "base")
	if err != nil {
		b.Fatal(err)
	}
	mnt := mountTest(b, mounts)
	changed := map[string]string{}
	for p := range base {
		changed[p] = "changed content, a little longer\n"
	}
	writeFiles(b, mnt, changed)
	view, err := d.View(ctx, "base-view", "base")
	if err != nil {
		b.Fatal(err)
	}
	lower := mountTest(b, view)
	ld := d.(graph.LayerDirer)

	var nativeTime, checkTime, naiveTime time.Duration
	var native, naive string
	for b.Loop() {
		start := time.Now()
		dir, format, err := ld.LayerDir(ctx, "c")
		if err != nil {
			b.Fatal(err)
		}
		checkTime += time.Since(start)
		dg, err := archive.WriteLayer(ctx, dir, format, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		nativeTime += time.Since(start)
		native = dg.String()

		start = time.Now()
		dg, err = archive.Diff(ctx, lower, mnt, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		naiveTime += time.Since(start)
		naive = dg.String()
	}
	if native != naive {
		b.Logf("native DiffID %s, naive %s", native, naive)
	}
	b.ReportMetric(float64(nativeTime.Nanoseconds())/float64(b.N), "native-ns/op")
	b.ReportMetric(float64(checkTime.Nanoseconds())/float64(b.N), "layerdir-check-ns/op")
	b.ReportMetric(float64(naiveTime.Nanoseconds())/float64(b.N), "naive-ns/op")
	b.ReportMetric(float64(naiveTime)/float64(nativeTime), "x-naive/native")
}

func mkdirs(b *testing.B, dirs ...string) {
	b.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
}

func unmountBench(b *testing.B, targets ...string) {
	b.Helper()
	for _, t := range targets {
		if err := graph.UnmountAll(t); err != nil {
			b.Fatal(err)
		}
	}
}
