package fuse_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/unionstack/unionstack/drivers/fuse"
	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/graphtest"
	"github.com/unionstack/unionstack/internal/testenv"
)

// An active snapshot on parents is a fuse3.unionctl mount of its rw
// branch over the parents' read-only branches, nearest first: "rr" for a
// layer without whiteouts, "ro" for one with; a view has no rw branch and
// is read-only.
func TestMountsAreUnionctlData(t *testing.T) {
	testenv.NeedRoot(t)
	d, _ := graphtest.Open(t, factory)
	ctx := context.Background()
	graphtest.CommitLayer(t, d, "l0", "", graphtest.File("a", "0", 0o644), graphtest.File("gone", "x", 0o644))
	graphtest.CommitLayer(t, d, "l1", "l0", graphtest.File("b", "1", 0o644), graphtest.Absent("gone"))

	ms, err := d.Prepare(ctx, "active", "l1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Type != "fuse3.unionctl" {
		t.Fatalf("mounts %+v, want one fuse3.unionctl", ms)
	}
	dirs := strings.TrimPrefix(ms[0].Options[0], "dirs=")
	branches := strings.Split(dirs, ":")
	if len(branches) != 3 || !strings.HasSuffix(branches[0], "=rw") || !strings.HasSuffix(branches[1], "=ro") || !strings.HasSuffix(branches[2], "=rr") {
		t.Fatalf("dirs %q, want rw over l1 ro (it has a whiteout) over l0 rr (none)", dirs)
	}

	vs, err := d.View(ctx, "view", "l1")
	if err != nil {
		t.Fatal(err)
	}
	view := graphtest.MountTemp(t, vs)
	graphtest.CheckTree(t, view, graphtest.File("a", "0", 0o644), graphtest.File("b", "1", 0o644), graphtest.Absent("gone"))
	err = os.WriteFile(filepath.Join(view, "c"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("write into a view: %v, want EROFS", err)
	}
}

// Commit drops unionfs's private work entries (.wh..wh.*) from the branch
// but keeps the layer's content, whiteouts and opaque markers.
func TestCommitDropsWorkEntries(t *testing.T) {
	testenv.NeedRoot(t)
	d, _ := graphtest.Open(t, factory)
	ctx := context.Background()
	graphtest.CommitLayer(t, d, "base", "", graphtest.File("gone", "x", 0o644), graphtest.File("dir/old", "o", 0o644))
	if _, err := d.Prepare(ctx, "active", "base"); err != nil {
		t.Fatal(err)
	}
	ld := d.(graph.LayerDirer)
	dir, _, err := ld.LayerDir(ctx, "active")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".wh..wh.orph/tmp1", "keep", ".wh.gone", "dir/.wh..wh..opq"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Commit(ctx, "top", "active"); err != nil {
		t.Fatal(err)
	}
	graphtest.CheckNames(t, dir, ".wh.gone", "dir", "keep")
	graphtest.CheckNames(t, filepath.Join(dir, "dir"), ".wh..wh..opq")
	view := graphtest.ViewTree(t, d, "view", "top")
	graphtest.CheckNames(t, view, "dir", "keep")
	graphtest.CheckNames(t, filepath.Join(view, "dir"))
}

// A root whose path would break the dirs= option is refused at open.
func TestRootWithSeparatorRefused(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a:b")
	_, err := fuse.New(root, nil)
	if !errors.Is(err, graph.ErrInvalidArgument) {
		t.Fatalf("New(%q): %v, want ErrInvalidArgument", root, err)
	}
	if _, err := fuse.New(t.TempDir(), map[string]string{"bogus": "1"}); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Fatalf("unknown option: %v, want ErrInvalidArgument", err)
	}
}

// The probe says the driver runs here and names its helper.
func TestProbe(t *testing.T) {
	testenv.NeedRoot(t)
	features, err := fuse.Probe(t.TempDir())
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if features["helper"] == "" {
		t.Errorf("features %v name no helper", features)
	}
}

// BenchmarkDeepLookup measures lookups (stat of a file in the bottom
// layer, of a missing name, and of a file in the top layer) through a
// union of 500 layers, against the same lookups through a union of one
// layer, in the same run.
func BenchmarkDeepLookup(b *testing.B) {
	testenv.NeedRoot(b)
	d, err := fuse.New(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	ctx := context.Background()
	ld := d.(graph.LayerDirer)
	parent := ""
	for i := range 500 {
		key := fmt.Sprintf("l%d", i)
		if _, err := d.Prepare(ctx, key+"-a", parent); err != nil {
			b.Fatal(err)
		}
		dir, _, err := ld.LayerDir(ctx, key+"-a")
		if err != nil {
			b.Fatal(err)
		}
		for j := range 20 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d-%d", i, j)), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		if err := d.Commit(ctx, key, key+"-a"); err != nil {
			b.Fatal(err)
		}
		parent = key
	}
	stat := func(b *testing.B, mnt string, names []string) float64 {
		var st syscall.Stat_t
		b.ResetTimer()
		n := 0
		for range b.N {
			for _, name := range names {
				_ = syscall.Stat(filepath.Join(mnt, name), &st)
				n++
			}
		}
		return float64(b.Elapsed().Nanoseconds()) / float64(n)
	}
	mountView := func(b *testing.B, key, parent string) string {
		ms, err := d.View(ctx, key, parent)
		if err != nil {
			b.Fatal(err)
		}
		return graphtest.MountTemp(b, ms)
	}
	var deepNS, shallowNS float64
	b.Run("500-layers", func(b *testing.B) {
		mnt := mountView(b, fmt.Sprintf("deep-%d", b.N), "l499")
		names := make([]string, 0, 300)
		for j := range 100 {
			names = append(names, fmt.Sprintf("f0-%d", j%20), fmt.Sprintf("f499-%d", j%20), fmt.Sprintf("missing-%d", j))
		}
		deepNS = stat(b, mnt, names)
		b.ReportMetric(deepNS, "ns/lookup")
	})
	b.Run("1-layer", func(b *testing.B) {
		mnt := mountView(b, fmt.Sprintf("shallow-%d", b.N), "l0")
		names := make([]string, 0, 300)
		for j := range 100 {
			names = append(names, fmt.Sprintf("f0-%d", j%20), fmt.Sprintf("f0-%d", (j+1)%20), fmt.Sprintf("missing-%d", j))
		}
		shallowNS = stat(b, mnt, names)
		b.ReportMetric(shallowNS, "ns/lookup")
		if deepNS > 0 {
			b.ReportMetric(deepNS/shallowNS, "x-deep-vs-1-layer")
		}
	})
}

// The passthrough option reaches writable mounts; views are read-only
// and take none (unionfs passes a union without an rw branch through
// anyway); a bad option or value is refused, naming it.
func TestPassthroughOption(t *testing.T) {
	testenv.NeedRoot(t)
	for _, tc := range []struct {
		opts map[string]string
		want string // "" for an error
	}{
		{map[string]string{fuse.OptPassthrough: "all"}, "passthrough=all"},
		{map[string]string{fuse.OptPassthrough: "on"}, "-"},
		{nil, "-"},
		{map[string]string{fuse.OptPassthrough: "off"}, ""},
		{map[string]string{"size": "10G"}, ""},
	} {
		d, err := fuse.New(t.TempDir(), tc.opts)
		if tc.want == "" {
			if err == nil || !errors.Is(err, graph.ErrInvalidArgument) {
				t.Errorf("options %v: %v, want an invalid-argument error", tc.opts, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("options %v: %v", tc.opts, err)
		}
		ctx := context.Background()
		graphtest.CommitLayer(t, d, "l0", "", graphtest.File("a", "0", 0o644))
		ms, err := d.Prepare(ctx, "active", "l0")
		if err != nil {
			t.Fatal(err)
		}
		vs, err := d.View(ctx, "view", "l0")
		if err != nil {
			t.Fatal(err)
		}
		active, view := strings.Join(ms[0].Options, ","), strings.Join(vs[0].Options, ",")
		if has := strings.Contains(active, "passthrough=all"); has != (tc.want != "-") {
			t.Errorf("options %v: active mount options %q", tc.opts, active)
		}
		if strings.Contains(view, "passthrough") {
			t.Errorf("options %v: view mount options %q", tc.opts, view)
		}
		d.Close()
	}
}
