package archive

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// FuzzApply feeds arbitrary bytes to Apply in every format: it must not
// panic, and nothing may appear outside the root (a sentinel sibling dir
// stays as it was).
func FuzzApply(f *testing.F) {
	seed := func(ents ...ent) []byte { return tarOf(f, ents...) }
	f.Add(allTypesTar(f), uint8(0))
	f.Add(compress(f, allTypesTar(f), Gzip), uint8(1))
	f.Add(compress(f, allTypesTar(f), Zstd), uint8(2))
	f.Add(seed(symE("evil", "../outside"), fileE("evil/x", "x", 0o644)), uint8(0))
	f.Add(seed(symE("evil", "/"), fileE("evil/x", "x", 0o644)), uint8(3))
	f.Add(seed(fileE("../outside/x", "x", 0o644)), uint8(0))
	f.Add(seed(linkE("x", "../outside/sentinel")), uint8(1))
	f.Add(seed(dirE("d/", 0o755), fileE("d/.wh..wh..opq", "", 0), fileE(".wh.d", "", 0), fileE("d/.wh.x", "", 0)), uint8(2))
	f.Add(paxTar(map[string]string{"path": "a\x00b"}, "x"), uint8(0))
	f.Fuzz(func(t *testing.T, layer []byte, format uint8) {
		if os.Geteuid() != 0 {
			t.Skip("needs root")
		}
		base := t.TempDir()
		root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
		os.Mkdir(root, 0o755)
		os.Mkdir(outside, 0o755)
		parent := filepath.Join(base, "parent")
		os.Mkdir(parent, 0o755)
		os.WriteFile(filepath.Join(parent, "target"), []byte("t"), 0o644)
		opts := ApplyOptions{Format: Format(format % 4), Parents: []string{parent}}
		var meta bytes.Buffer
		if format&4 != 0 {
			opts.TarSplit = &meta
		}
		// A hang is a failure too: crash with every goroutine's stack.
		wd := time.AfterFunc(30*time.Second, func() {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			panic("Apply hung for 30s:\n" + string(buf[:n]))
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = Apply(ctx, root, bytes.NewReader(layer), opts)
		cancel()
		wd.Stop()
		if names, _ := os.ReadDir(outside); len(names) != 0 {
			t.Fatalf("written outside the root: %v", names)
		}
		if names, _ := os.ReadDir(base); len(names) != 3 {
			t.Fatalf("written beside the root: %v", names)
		}
		if err := os.RemoveAll(root); err != nil {
			t.Fatalf("root not removable: %v", err)
		}
	})
}
