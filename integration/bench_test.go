package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/unionstack/unionstack/drivers/fuse/fusetest"
	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/archive"
	"github.com/unionstack/unionstack/internal/testimage"
	"github.com/unionstack/unionstack/unionfs"
)

// benchDrivers is the order the benchmarks run the drivers in: overlay
// first, because every other driver's time is reported as a ratio to it.
var benchDrivers = []string{"overlay", "vfs", "fuse"}

// benchChainDepth is the depth of the layer chain each driver builds; the
// 10-layer rootfs is the first 10 layers of it.
const benchChainDepth = 128

// benchDiffFiles is the number of files changed in the diff container.
const benchDiffFiles = 1000

// benchEnv is one driver set up for the benchmarks: a 128-layer chain
// built with the Driver API (each layer adds two files to one directory
// and changes a file of the layers below), and a Store with a container that changed
// benchDiffFiles files of its image.
type benchEnv struct {
	ds      *driverStore
	layers  []string // committed layer keys, base first
	mntRoot string   // where iterations mount
	native  bool     // whether the container's diff is native (a layer dir)
}

// overlayNs holds overlay's ns/op per operation, for the x-overlay ratio.
var (
	overlayMu sync.Mutex
	overlayNs = map[string]float64{}
)

// BenchmarkDrivers runs the same operations through overlay, vfs and fuse,
// side by side as BenchmarkDrivers/OP/DRIVER, each reporting its time as a
// multiple of overlay's ("x-overlay"):
//
//   - prepare+mount-10, prepare+mount-128: Prepare an active snapshot on a
//     10- or 128-layer chain and mount it (MountAll, then a stat inside);
//   - commit: Commit an active snapshot (on 10 layers) holding a few files;
//   - remove: Remove such an active snapshot;
//   - diff-1000: Store.ContainerDiff of a container that changed 1,000
//     files of its image (native for overlay and fuse, a tree comparison
//     for vfs).
//
// The fuse driver's mounts run twice: "fuse" starts a mount daemon per
// mount (the unionctl helper), "fuse-served" hands each mount to one
// running mount server (unionctl serve), as a host running containers
// would have.
func BenchmarkDrivers(b *testing.B) {
	// Started first, so that it stops last, after every unmount.
	socket := fusetest.StartMountServer(b)
	envs := setupBench(b)
	ops := []struct {
		name   string
		fn     func(b *testing.B, env *benchEnv)
		served bool // run fuse-served too
	}{
		{"prepare+mount-10", func(b *testing.B, env *benchEnv) { benchPrepareMount(b, env, 10) }, true},
		{"prepare+mount-128", func(b *testing.B, env *benchEnv) { benchPrepareMount(b, env, benchChainDepth) }, true},
		{"commit", benchCommit, false},
		{"remove", benchRemove, false},
		{"diff-1000", benchDiff, false},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			names := benchDrivers
			if op.served {
				names = append(names[:len(names):len(names)], "fuse-served")
			}
			for _, name := range names {
				b.Run(name, func(b *testing.B) {
					driver := name
					switch name {
					case "fuse":
						// No server here: each mount starts a daemon.
						b.Setenv(unionfs.ServeSocketEnv, filepath.Join(b.TempDir(), "no-server.sock"))
					case "fuse-served":
						b.Setenv(unionfs.ServeSocketEnv, socket)
						driver = "fuse"
					}
					op.fn(b, envs[driver])
					reportRatio(b, op.name, name)
				})
			}
		})
	}
}

// reportRatio reports this run's ns/op as a multiple of overlay's for op.
func reportRatio(b *testing.B, op, driver string) {
	if b.N == 0 {
		return
	}
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	overlayMu.Lock()
	defer overlayMu.Unlock()
	if driver == "overlay" {
		overlayNs[op] = ns
	}
	if base := overlayNs[op]; base > 0 {
		b.ReportMetric(ns/base, "x-overlay")
	}
}

// setupBench opens each driver with a Store, builds the layer chains (the
// drivers concurrently: it is mostly waiting for the disk) and the diff
// containers. Everything goes when b ends.
func setupBench(b *testing.B) map[string]*benchEnv {
	b.Helper()
	envs := map[string]*benchEnv{}
	for _, name := range benchDrivers {
		ds := openDriverStore(b, name)
		envs[name] = &benchEnv{ds: ds, mntRoot: ds.mountDir(b, "bench-mounts")}
	}
	start := time.Now()
	errs := make(chan error, len(envs))
	for _, env := range envs {
		go func() { errs <- env.buildChain() }()
	}
	var failed bool
	for range envs {
		if err := <-errs; err != nil {
			b.Error(err)
			failed = true
		}
	}
	for _, env := range envs {
		b.Cleanup(env.removeChain(b))
	}
	if failed {
		b.FailNow()
	}
	b.Logf("built %d-layer chains on %v in %v", benchChainDepth, benchDrivers, time.Since(start))
	for _, name := range benchDrivers {
		envs[name].setupDiff(b)
	}
	return envs
}

// buildChain commits benchChainDepth layers, each on the one before: each
// adds two files to one directory and changes a file of the layers below.
func (env *benchEnv) buildChain() error {
	parent := ""
	for i := range benchChainDepth {
		key := fmt.Sprintf("L%d", i)
		files := map[string]string{
			"common/changed":                key + "\n",
			fmt.Sprintf("layers/%03d-a", i): fmt.Sprintf("layer %d file a\n", i),
			fmt.Sprintf("layers/%03d-b", i): fmt.Sprintf("layer %d file b\n", i),
		}
		if err := env.commit(key, parent, files); err != nil {
			return err
		}
		env.layers = append(env.layers, key)
		parent = key
	}
	return nil
}

// removeChain returns a cleanup that removes the chain, top first.
func (env *benchEnv) removeChain(b *testing.B) func() {
	return func() {
		for i := len(env.layers) - 1; i >= 0; i-- {
			if err := env.ds.d.Remove(context.Background(), env.layers[i]); err != nil {
				b.Errorf("%s: remove %s: %v", env.ds.name, env.layers[i], err)
				return
			}
		}
	}
}

// commit creates the committed snapshot key on parent holding files.
func (env *benchEnv) commit(key, parent string, files map[string]string) error {
	ctx := context.Background()
	active := key + "-active"
	mounts, err := env.ds.d.Prepare(ctx, active, parent)
	if err != nil {
		return fmt.Errorf("%s: prepare %s: %w", env.ds.name, active, err)
	}
	if err := env.write(active, mounts, files); err != nil {
		return err
	}
	if err := env.ds.d.Commit(ctx, key, active); err != nil {
		return fmt.Errorf("%s: commit %s: %w", env.ds.name, key, err)
	}
	return nil
}

// write writes files into the active snapshot key without mounting when
// it can: into the source of a bind mount, or into the driver's layer
// directory (new files need no whiteouts, whatever its format); else
// through a mount.
func (env *benchEnv) write(key string, mounts []graph.Mount, files map[string]string) (err error) {
	dir := ""
	if len(mounts) == 1 && mounts[0].Type == "bind" {
		dir = mounts[0].Source
	} else if ld, ok := env.ds.d.(graph.LayerDirer); ok {
		if d, _, err := ld.LayerDir(context.Background(), key); err == nil {
			dir = d
		}
	}
	if dir == "" {
		dir = filepath.Join(env.mntRoot, "write-"+key)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		if err := graph.MountAll(mounts, dir); err != nil {
			return fmt.Errorf("%s: mount %s: %w", env.ds.name, key, err)
		}
		defer func() {
			if uerr := graph.UnmountAll(dir); uerr != nil && err == nil {
				err = fmt.Errorf("%s: unmount %s: %w", env.ds.name, dir, uerr)
			}
			os.Remove(dir)
		}()
	}
	return writeFiles(dir, files)
}

// writeFiles writes files (path -> content) below dir.
func writeFiles(dir string, files map[string]string) error {
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// setupDiff imports an image of benchDiffFiles files (4 KiB each, in 10
// directories) and creates container "diff" that rewrote every one.
func (env *benchEnv) setupDiff(b *testing.B) {
	b.Helper()
	ctx := context.Background()
	tb := testimage.NewTarBuilder()
	for d := range 10 {
		tb.Dir(fmt.Sprintf("data%d", d), 0o755)
		for f := range benchDiffFiles / 10 {
			tb.File(fmt.Sprintf("data%d/file%03d", d, f), 0o644, pseudoRandom(4096, uint64(d*1000+f)))
		}
	}
	img := testimage.NewImage("bench/diff:latest", []testimage.Layer{tb.Layer()}, testimage.RunConfig)
	layout := b.TempDir()
	if err := img.WriteOCILayout(layout, testimage.Plain); err != nil {
		b.Fatal(err)
	}
	s := env.ds.store
	if _, err := s.Import(ctx, layout, graph.ImportOptions{}); err != nil {
		b.Fatalf("%s: import the diff image: %v", env.ds.name, err)
	}
	mounts, err := s.CreateContainer(ctx, "diff", img.Name)
	if err != nil {
		b.Fatalf("%s: create container: %v", env.ds.name, err)
	}
	b.Cleanup(func() {
		if err := s.RemoveContainer(ctx, "diff"); err != nil {
			b.Errorf("%s: remove container: %v", env.ds.name, err)
		}
	})
	rootfs := env.ds.mountDir(b, "diff-rootfs")
	if err := graph.MountAll(mounts, rootfs); err != nil {
		b.Fatalf("%s: mount container: %v", env.ds.name, err)
	}
	for d := range 10 {
		for f := range benchDiffFiles / 10 {
			p := filepath.Join(rootfs, fmt.Sprintf("data%d/file%03d", d, f))
			if err := os.WriteFile(p, pseudoRandom(4096, uint64(d*1000+f+1)), 0o644); err != nil {
				_ = graph.UnmountAll(rootfs)
				b.Fatalf("%s: change %s: %v", env.ds.name, p, err)
			}
		}
	}
	if err := graph.UnmountAll(rootfs); err != nil {
		b.Fatalf("%s: unmount container: %v", env.ds.name, err)
	}
	c, err := s.Container(ctx, "diff")
	if err != nil {
		b.Fatal(err)
	}
	if ld, ok := env.ds.d.(graph.LayerDirer); ok {
		_, format, err := ld.LayerDir(ctx, c.Key)
		env.native = err == nil && format != archive.FormatTree
	}
}

// benchPrepareMount times Prepare on layer depth-1 of the chain plus the
// mount of the result and one stat inside it.
func benchPrepareMount(b *testing.B, env *benchEnv, depth int) {
	ctx := context.Background()
	parent := env.layers[depth-1]
	probe := fmt.Sprintf("layers/%03d-a", depth-1)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		key := fmt.Sprintf("pm%d-%d", depth, i)
		target := filepath.Join(env.mntRoot, key)
		if err := os.Mkdir(target, 0o755); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		mounts, err := env.ds.d.Prepare(ctx, key, parent)
		if err != nil {
			b.Fatalf("%s: prepare on %d layers: %v", env.ds.name, depth, err)
		}
		if err := graph.MountAll(mounts, target); err != nil {
			b.Fatalf("%s: mount %d layers: %v", env.ds.name, depth, err)
		}
		if _, err := os.Stat(filepath.Join(target, probe)); err != nil {
			b.Fatalf("%s: the rootfs of %d layers lacks %s: %v", env.ds.name, depth, probe, err)
		}
		b.StopTimer()
		if err := graph.UnmountAll(target); err != nil {
			b.Fatalf("%s: unmount: %v", env.ds.name, err)
		}
		if err := env.ds.d.Remove(ctx, key); err != nil {
			b.Fatalf("%s: remove: %v", env.ds.name, err)
		}
		os.Remove(target)
		b.StartTimer()
	}
}

// prepareWithFiles prepares key on the 10-layer chain and writes a few
// files into it.
func (env *benchEnv) prepareWithFiles(b *testing.B, key string) {
	mounts, err := env.ds.d.Prepare(context.Background(), key, env.layers[9])
	if err != nil {
		b.Fatalf("%s: prepare %s: %v", env.ds.name, key, err)
	}
	if err := env.write(key, mounts, map[string]string{"new/a": "a", "new/b": "b", "common/changed": key}); err != nil {
		b.Fatal(err)
	}
}

// benchCommit times Commit of an active snapshot holding a few files.
func benchCommit(b *testing.B, env *benchEnv) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		key, name := fmt.Sprintf("commit-active-%d", i), fmt.Sprintf("commit-%d", i)
		env.prepareWithFiles(b, key)
		b.StartTimer()
		if err := env.ds.d.Commit(ctx, name, key); err != nil {
			b.Fatalf("%s: commit: %v", env.ds.name, err)
		}
		b.StopTimer()
		if err := env.ds.d.Remove(ctx, name); err != nil {
			b.Fatalf("%s: remove: %v", env.ds.name, err)
		}
		b.StartTimer()
	}
}

// benchRemove times Remove of an active snapshot holding a few files.
func benchRemove(b *testing.B, env *benchEnv) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		key := fmt.Sprintf("remove-%d", i)
		env.prepareWithFiles(b, key)
		b.StartTimer()
		if err := env.ds.d.Remove(ctx, key); err != nil {
			b.Fatalf("%s: remove: %v", env.ds.name, err)
		}
	}
}

// benchDiff times Store.ContainerDiff of the container that changed
// benchDiffFiles files.
func benchDiff(b *testing.B, env *benchEnv) {
	ctx := context.Background()
	if b.N == 1 { // once, not again for each b.N the benchmark is run with
		if env.native {
			b.Logf("%s: native diff (layer dir)", env.ds.name)
		} else {
			b.Logf("%s: naive diff (tree comparison)", env.ds.name)
		}
	}
	var n int64
	for i := 0; i < b.N; i++ {
		cw := &countWriter{}
		if _, err := env.ds.store.ContainerDiff(ctx, "diff", cw); err != nil {
			b.Fatalf("%s: container diff: %v", env.ds.name, err)
		}
		n = cw.n
	}
	if n < benchDiffFiles*4096 {
		b.Fatalf("%s: diff of %d bytes, want at least %d (the changed files)", env.ds.name, n, benchDiffFiles*4096)
	}
	b.SetBytes(n)
}

// countWriter counts and discards what is written.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

var _ io.Writer = (*countWriter)(nil)
