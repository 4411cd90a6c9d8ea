package graph_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testimage"
)

// expectNothingLeft checks that a failed import left no layer, image,
// snapshot or scratch file behind, and that the store reopens.
func (e *stEnv) expectNothingLeft(wantSnapshots int) {
	e.t.Helper()
	ctx := context.Background()
	if snaps := e.snapshots(); len(snaps) != wantSnapshots {
		e.t.Errorf("snapshots left: %v (want %d)", snaps, wantSnapshots)
	}
	for _, s := range e.snapshots() {
		if !strings.HasPrefix(s, "Committed ") {
			e.t.Errorf("non-committed snapshot left: %s", s)
		}
	}
	if imgs, _ := e.s.Images(ctx); len(imgs) != 0 {
		e.t.Errorf("images left: %v", imgs)
	}
	if ls, _ := e.s.Layers(ctx); len(ls) != wantSnapshots {
		e.t.Errorf("layers left: %v", ls)
	}
	if left, _ := os.ReadDir(filepath.Join(e.storeDir, "tmp")); len(left) != 0 {
		e.t.Errorf("scratch files left: %v", left)
	}
	e.close()
	e.open(graph.StoreOptions{})
}

func TestStoreImportBadBlobDigest(t *testing.T) {
	e := newStoreEnv(t, graph.StoreOptions{})
	layout, _, img := testimage.BusyboxImage(t)
	// Flip one byte of the last layer blob, keeping its size: the blob no
	// longer matches the digest the manifest names.
	m, _, _, err := testimage.ReadLayout(layout)
	if err != nil {
		t.Fatal(err)
	}
	p := testimage.BlobPath(layout, m.Layers[2].Digest)
	data, _ := os.ReadFile(p)
	data[len(data)/2] ^= 0xff
	os.WriteFile(p, data, 0o644)
	_, err = e.s.Import(context.Background(), layout, graph.ImportOptions{})
	if !errors.Is(err, graph.ErrInvalidArgument) {
		t.Fatalf("import of a corrupt blob: %v, want ErrInvalidArgument", err)
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), m.Layers[2].Digest.Encoded()) {
		t.Errorf("error does not name the blob: %v", err)
	}
	// The layers unpacked before are taken back too.
	e.expectNothingLeft(0)
	// The good image still imports afterwards.
	good := t.TempDir()
	img.WriteOCILayout(good, testimage.Gzip)
	e.mustImport(good, graph.ImportOptions{})
}

func TestStoreImportDiffIDMismatch(t *testing.T) {
	e := newStoreEnv(t, graph.StoreOptions{})
	img := testimage.Busybox(t)
	// The config says layer 1 is something else than it is.
	bad := testimage.NewImage("bad:diffid", img.Layers, testimage.RunConfig)
	other := testimage.NewTarBuilder().File("x", 0o644, []byte("x")).Layer()
	layers := slices.Clone(img.Layers)
	layers[1] = other
	cfgFrom := testimage.NewImage("bad:diffid", layers, testimage.RunConfig)
	bad.Config, bad.ID = cfgFrom.Config, cfgFrom.ID
	layout := t.TempDir()
	if err := bad.WriteOCILayout(layout, testimage.Zstd); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.Import(context.Background(), layout, graph.ImportOptions{})
	if !errors.Is(err, graph.ErrInvalidArgument) {
		t.Fatalf("import with a wrong diff_id: %v, want ErrInvalidArgument", err)
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), string(other.DiffID)) || !strings.Contains(err.Error(), string(img.Layers[1].DiffID)) {
		t.Errorf("error does not name the layer: %v", err)
	}
	e.expectNothingLeft(0)
}

func TestStoreImportTruncatedLayer(t *testing.T) {
	for _, tc := range []struct {
		name string
		data func(tar []byte) []byte
	}{
		{"truncated-tar", func(tar []byte) []byte { return testimage.Compress(tar[:len(tar)/2], testimage.Gzip) }},
		{"truncated-gzip", func(tar []byte) []byte { gz := testimage.Compress(tar, testimage.Gzip); return gz[:len(gz)*2/3] }},
		{"truncated-zstd", func(tar []byte) []byte { z := testimage.Compress(tar, testimage.Zstd); return z[:len(z)*2/3] }},
		{"garbage", func(tar []byte) []byte { return []byte(strings.Repeat("not a tar\n", 1000)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newStoreEnv(t, graph.StoreOptions{})
			layout, _, img := testimage.BusyboxImage(t)
			// Layer 0 (the busybox binary) is cut short; every digest in
			// the layout matches the cut blob, only the stream is broken.
			if err := testimage.ReplaceLayerBlob(layout, 0, tc.data(img.Layers[0].Tar), ""); err != nil {
				t.Fatal(err)
			}
			_, err := e.s.Import(context.Background(), layout, graph.ImportOptions{})
			if err == nil {
				t.Fatal("import of a truncated layer succeeded")
			}
			t.Logf("error: %v", err)
			e.expectNothingLeft(0)
		})
	}
}

func TestStoreImportBadLayouts(t *testing.T) {
	ctx := context.Background()
	e := newStoreEnv(t, graph.StoreOptions{})
	layout, _, _ := testimage.BusyboxImage(t)
	if _, err := e.s.Import(ctx, filepath.Join(t.TempDir(), "missing"), graph.ImportOptions{}); !errors.Is(err, graph.ErrNotFound) {
		t.Errorf("missing path: %v, want ErrNotFound", err)
	}
	empty := t.TempDir()
	if _, err := e.s.Import(ctx, empty, graph.ImportOptions{}); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("empty dir: %v, want ErrInvalidArgument", err)
	}
	notTar := filepath.Join(t.TempDir(), "x.tar")
	os.WriteFile(notTar, []byte("hello"), 0o644)
	if _, err := e.s.Import(ctx, notTar, graph.ImportOptions{}); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("not a tar: %v, want ErrInvalidArgument", err)
	}
	if _, err := e.s.Import(ctx, layout, graph.ImportOptions{Name: "bad name"}); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("bad name: %v, want ErrInvalidArgument", err)
	}
	// A missing blob.
	m, _, _, err := testimage.ReadLayout(layout)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(testimage.BlobPath(layout, m.Layers[1].Digest))
	if _, err := e.s.Import(ctx, layout, graph.ImportOptions{}); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("missing blob: %v, want ErrInvalidArgument", err)
	}
	e.expectNothingLeft(0)
}

// TestStoreDepthLimit checks that an image deeper than the limit is
// refused before anything is unpacked, from the options and from a driver
// that says it can stack fewer layers.
func TestStoreDepthLimit(t *testing.T) {
	ctx := context.Background()
	layout, _, _ := testimage.BusyboxImage(t)
	e := newStoreEnv(t, graph.StoreOptions{MaxDepth: 2})
	if e.s.MaxDepth() != 2 {
		t.Errorf("MaxDepth %d, want 2", e.s.MaxDepth())
	}
	_, err := e.s.Import(ctx, layout, graph.ImportOptions{})
	if !errors.Is(err, graph.ErrNotSupported) || !strings.Contains(err.Error(), "depth limit of 2") {
		t.Fatalf("import of 3 layers with limit 2: %v", err)
	}
	t.Logf("error: %v", err)
	e.expectNothingLeft(0)

	// A driver telling a lower limit wins over the default.
	s, err := graph.OpenStore(t.TempDir(), shallowDriver{e.d})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.MaxDepth() != 1 {
		t.Errorf("MaxDepth with a depth-1 driver: %d", s.MaxDepth())
	}
	if _, err := s.Import(ctx, layout, graph.ImportOptions{}); !errors.Is(err, graph.ErrNotSupported) {
		t.Errorf("import on a depth-1 driver: %v", err)
	}
	if _, err := graph.OpenStoreWithOptions(t.TempDir(), e.d, graph.StoreOptions{MaxDepth: -1}); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("negative MaxDepth: %v", err)
	}
	if graph.DefaultMaxDepth != 125 {
		t.Errorf("DefaultMaxDepth %d", graph.DefaultMaxDepth)
	}
}

// shallowDriver is a Driver that says it stacks only one layer.
type shallowDriver struct{ graph.Driver }

func (shallowDriver) MaxDepth() int { return 1 }

var _ graph.DepthLimiter = shallowDriver{}

// TestStoreDeepChain commits a chain of layers up to the limit through
// containers and checks the next commit is refused.
func TestStoreDeepChain(t *testing.T) {
	ctx := context.Background()
	e := newStoreEnv(t, graph.StoreOptions{MaxDepth: 4})
	base := testimage.NewImage("base:1", []testimage.Layer{testimage.NewTarBuilder().File("f0", 0o644, []byte("0")).Layer()}, testimage.RunConfig)
	layout := t.TempDir()
	base.WriteOCILayout(layout)
	e.mustImport(layout, graph.ImportOptions{})
	ref := "base:1"
	for depth := 2; depth <= 5; depth++ {
		mounts, err := e.s.CreateContainer(ctx, "c", ref)
		if err != nil {
			t.Fatal(err)
		}
		if len(mounts) != 1 || mounts[0].Type != "bind" {
			t.Fatalf("vfs mounts %v", mounts)
		}
		os.WriteFile(filepath.Join(mounts[0].Source, "f"+string(rune('0'+depth))), []byte{byte(depth)}, 0o644)
		l, err := e.s.CommitContainer(ctx, "c")
		if depth == 5 {
			if !errors.Is(err, graph.ErrNotSupported) {
				t.Errorf("commit at depth 5 with limit 4: %v", err)
			}
			break
		}
		if err != nil {
			t.Fatalf("commit at depth %d: %v", depth, err)
		}
		if l.Depth != depth {
			t.Errorf("layer depth %d, want %d", l.Depth, depth)
		}
		img, err := e.s.CreateImage(ctx, "img:"+string(rune('0'+depth)), l.ChainID, imageConfigOf(t, e, ref))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.s.RemoveContainer(ctx, "c"); err != nil {
			t.Fatal(err)
		}
		ref = string(img.ID)
	}
}

// imageConfigOf returns the parsed config of image ref.
func imageConfigOf(t *testing.T, e *stEnv, ref string) (cfg ociImage) {
	t.Helper()
	img, err := e.s.Image(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err = img.OCIConfig()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ociImage is the parsed image config.
type ociImage = ocispec.Image
