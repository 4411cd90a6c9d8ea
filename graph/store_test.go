package graph_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	_ "github.com/unionstack/unionstack/drivers/vfs"
	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testenv"
	"github.com/unionstack/unionstack/internal/testimage"
)

// stEnv is a Store on a real vfs driver in scratch directories.
type stEnv struct {
	t         *testing.T
	driverDir string
	storeDir  string
	d         graph.Driver
	s         *graph.Store
}

// newStoreEnv opens a vfs driver and a Store on it, closed at cleanup.
func newStoreEnv(t *testing.T, opts graph.StoreOptions) *stEnv {
	t.Helper()
	testenv.NeedRoot(t) // vfs keeps owners, xattrs and device files
	base := t.TempDir()
	e := &stEnv{t: t, driverDir: filepath.Join(base, "vfs"), storeDir: filepath.Join(base, "store")}
	e.open(opts)
	t.Cleanup(e.close)
	return e
}

// open (re)opens the driver and the store.
func (e *stEnv) open(opts graph.StoreOptions) {
	e.t.Helper()
	d, err := graph.Open("vfs", e.driverDir, nil)
	if err != nil {
		e.t.Fatalf("open vfs: %v", err)
	}
	s, err := graph.OpenStoreWithOptions(e.storeDir, d, opts)
	if err != nil {
		d.Close()
		e.t.Fatalf("open store: %v", err)
	}
	e.d, e.s = d, s
}

// close closes the store and the driver (idempotent).
func (e *stEnv) close() {
	if e.s != nil {
		e.s.Close()
		e.s = nil
	}
	if e.d != nil {
		e.d.Close()
		e.d = nil
	}
}

// snapshots lists every snapshot of the driver as "Kind name".
func (e *stEnv) snapshots() []string {
	e.t.Helper()
	var out []string
	err := e.d.Walk(context.Background(), func(_ context.Context, info graph.Info) error {
		out = append(out, info.Kind.String()+" "+info.Name)
		return nil
	})
	if err != nil {
		e.t.Fatalf("walk: %v", err)
	}
	slices.Sort(out)
	return out
}

// mustImport imports path and expects exactly one image.
func (e *stEnv) mustImport(path string, opts graph.ImportOptions) graph.Image {
	e.t.Helper()
	imgs, err := e.s.Import(context.Background(), path, opts)
	if err != nil {
		e.t.Fatalf("import %s: %v", path, err)
	}
	if len(imgs) != 1 {
		e.t.Fatalf("import %s: %d images, want 1", path, len(imgs))
	}
	return imgs[0]
}

func TestStoreImportOCILayout(t *testing.T) {
	e := newStoreEnv(t, graph.StoreOptions{})
	ctx := context.Background()
	layout, diffIDs, want := testimage.BusyboxImage(t)
	var calls int
	var last, total int64
	img := e.mustImport(layout, graph.ImportOptions{Progress: func(done, tot int64) { calls++; last, total = done, tot }})
	if img.ID != want.ID {
		t.Errorf("image id %s, want %s (config digest)", img.ID, want.ID)
	}
	if !slices.Equal(img.Names, []string{testimage.DefaultName}) {
		t.Errorf("names %v, want [%s]", img.Names, testimage.DefaultName)
	}
	if !slices.Equal(img.DiffIDs, diffIDs) {
		t.Errorf("diff ids %v, want %v", img.DiffIDs, diffIDs)
	}
	if !bytes.Equal(img.Config, want.Config) {
		t.Errorf("config not kept verbatim")
	}
	if calls == 0 || last != total || total == 0 {
		t.Errorf("progress: %d calls, last %d of %d", calls, last, total)
	}
	rc, err := img.ImageConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rc.Entrypoint, testimage.RunConfig.Entrypoint) || !slices.Equal(rc.Cmd, testimage.RunConfig.Cmd) ||
		!slices.Equal(rc.Env, testimage.RunConfig.Env) || rc.WorkingDir != "/home/user" || rc.User != "1000:1000" {
		t.Errorf("image config %+v", rc)
	}

	layers, err := e.s.ImageLayers(ctx, testimage.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	chain := graph.ChainIDs(diffIDs)
	for i, l := range layers {
		if l.DiffID != diffIDs[i] || l.ChainID != chain[i] || l.Depth != i+1 {
			t.Errorf("layer %d: %+v, want diff %s chain %s", i, l, diffIDs[i], chain[i])
		}
		if i > 0 && l.Parent != chain[i-1] {
			t.Errorf("layer %d parent %s, want %s", i, l.Parent, chain[i-1])
		}
		if l.Size != int64(len(want.Layers[i].Tar)) {
			t.Errorf("layer %d size %d, want %d", i, l.Size, len(want.Layers[i].Tar))
		}
		if l.CompressedDigest == "" || l.MediaType == "" {
			t.Errorf("layer %d: source blob not recorded: %+v", i, l)
		}
	}
	if chain[0] != diffIDs[0] || chain[1] != digest.FromString(string(diffIDs[0])+" "+string(diffIDs[1])) {
		t.Errorf("ChainIDs %v do not follow the OCI definition", chain)
	}
	// Every layer is one committed snapshot named by its ChainID; nothing else.
	var wantSnaps []string
	for _, c := range chain {
		wantSnaps = append(wantSnaps, "Committed "+string(c))
	}
	slices.Sort(wantSnaps)
	if got := e.snapshots(); !slices.Equal(got, wantSnaps) {
		t.Errorf("snapshots %v, want %v", got, wantSnaps)
	}

	// Lookups by id, id prefix and short name.
	for _, ref := range []string{string(want.ID), want.ID.Encoded(), want.ID.Encoded()[:12], "unionstack.test/busybox"} {
		if got, err := e.s.Image(ctx, ref); err != nil || got.ID != want.ID {
			t.Errorf("Image(%q) = %s, %v", ref, got.ID, err)
		}
	}
	if _, err := e.s.Image(ctx, "nosuch:image"); !errors.Is(err, graph.ErrNotFound) {
		t.Errorf("Image(nosuch) error %v, want ErrNotFound", err)
	}

	if err := e.s.TagImage(ctx, want.ID.Encoded()[:8], "tagged:1"); err != nil {
		t.Fatal(err)
	}
	if got, err := e.s.Image(ctx, "tagged:1"); err != nil || got.ID != want.ID {
		t.Errorf("Image(tagged:1) = %s, %v", got.ID, err)
	}
	if _, err := e.s.RemoveImage(ctx, "tagged:1", false); err != nil {
		t.Errorf("untag: %v", err)
	}
	if err := e.s.TagImage(ctx, testimage.DefaultName, "sha256:abc"); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("tag that looks like an id: %v", err)
	}

	// A second import adds nothing.
	again := e.mustImport(layout, graph.ImportOptions{Name: "other:tag"})
	if again.ID != want.ID || !slices.Equal(again.Names, []string{testimage.DefaultName, "other:tag"}) {
		t.Errorf("re-import: %s %v", again.ID, again.Names)
	}
	if n := len(e.snapshots()); n != 3 {
		t.Errorf("re-import made snapshots: %d", n)
	}
}

func TestStoreImportDockerArchive(t *testing.T) {
	img := testimage.Busybox(t)
	for _, tc := range []struct {
		name string
		opts testimage.DockerOptions
	}{
		{"classic-plain", testimage.DockerOptions{}},
		{"classic-gzip", testimage.DockerOptions{Compression: testimage.Gzip}},
		{"blobs-plain", testimage.DockerOptions{Blobs: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newStoreEnv(t, graph.StoreOptions{})
			path := filepath.Join(t.TempDir(), "image.tar")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := img.WriteDockerArchive(f, tc.opts); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got := e.mustImport(path, graph.ImportOptions{})
			if got.ID != img.ID || !slices.Equal(got.DiffIDs, img.DiffIDs()) || !slices.Equal(got.Names, []string{testimage.DefaultName}) {
				t.Errorf("imported %s %v %v, want %s %v", got.ID, got.Names, got.DiffIDs, img.ID, img.DiffIDs())
			}
		})
	}
	t.Run("pipe", func(t *testing.T) {
		e := newStoreEnv(t, graph.StoreOptions{})
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			img.WriteDockerArchive(pw, testimage.DockerOptions{})
			pw.Close()
		}()
		defer pr.Close()
		imgs, err := e.s.ImportDockerArchive(context.Background(), pr, graph.ImportOptions{Name: "piped:1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != 1 || imgs[0].ID != img.ID || !slices.Equal(imgs[0].Names, []string{"piped:1"}) {
			t.Errorf("imported %+v", imgs)
		}
		// The spool file is gone.
		if left, _ := os.ReadDir(filepath.Join(e.storeDir, "tmp")); len(left) != 0 {
			t.Errorf("scratch files left: %v", left)
		}
	})
}

// TestStoreExportRoundTrip imports the OCI layout (gzip and zstd layers)
// and the docker archive (plain layers), exports, and checks that every
// exported layer is byte for byte the tar that was imported and the config
// (hence the image id) is unchanged.
func TestStoreExportRoundTrip(t *testing.T) {
	ctx := context.Background()
	layout, diffIDs, want := testimage.BusyboxImage(t)
	archivePath, _ := testimage.BusyboxDockerArchive(t)
	for _, src := range []string{layout, archivePath} {
		e := newStoreEnv(t, graph.StoreOptions{})
		e.mustImport(src, graph.ImportOptions{})
		for _, comp := range []string{"", "zstd", "none"} {
			out := filepath.Join(t.TempDir(), "export")
			if err := e.s.Export(ctx, testimage.DefaultName, out, graph.ExportOptions{Compression: comp}); err != nil {
				t.Fatalf("export %s (%q): %v", src, comp, err)
			}
			m, cfg, layers, err := testimage.ReadLayout(out)
			if err != nil {
				t.Fatalf("read export: %v", err)
			}
			if !bytes.Equal(cfg, want.Config) || m.Config.Digest != want.ID {
				t.Errorf("exported config differs (digest %s, want %s)", m.Config.Digest, want.ID)
			}
			if len(layers) != len(diffIDs) {
				t.Fatalf("exported %d layers, want %d", len(layers), len(diffIDs))
			}
			for i, l := range layers {
				if got := digest.FromBytes(l); got != diffIDs[i] {
					t.Errorf("%s %q: exported layer %d has DiffID %s, want %s", src, comp, i, got, diffIDs[i])
				}
				if !bytes.Equal(l, want.Layers[i].Tar) {
					t.Errorf("exported layer %d is not byte-identical", i)
				}
			}
			// The export imports again into a fresh store as the same image.
			e2 := newStoreEnv(t, graph.StoreOptions{})
			back := e2.mustImport(out, graph.ImportOptions{})
			if back.ID != want.ID || !slices.Equal(back.Names, []string{testimage.DefaultName}) {
				t.Errorf("re-import of export: %s %v", back.ID, back.Names)
			}
			e2.close()
		}
		// Export's views are gone.
		if n := len(e.snapshots()); n != 3 {
			t.Errorf("after export %d snapshots: %v", n, e.snapshots())
		}
		// Export refuses a non-empty directory and leaves it alone.
		busy := t.TempDir()
		os.WriteFile(filepath.Join(busy, "keep"), []byte("x"), 0o644)
		if err := e.s.Export(ctx, testimage.DefaultName, busy, graph.ExportOptions{}); !errors.Is(err, graph.ErrAlreadyExists) {
			t.Errorf("export into non-empty dir: %v, want ErrAlreadyExists", err)
		}
		if ents, _ := os.ReadDir(busy); len(ents) != 1 {
			t.Errorf("non-empty export dir changed: %v", ents)
		}
	}
}

func TestStoreExportDockerArchive(t *testing.T) {
	ctx := context.Background()
	e := newStoreEnv(t, graph.StoreOptions{})
	layout, diffIDs, want := testimage.BusyboxImage(t)
	e.mustImport(layout, graph.ImportOptions{})
	path := filepath.Join(t.TempDir(), "out.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.ExportDockerArchive(ctx, testimage.DefaultName, f, graph.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e2 := newStoreEnv(t, graph.StoreOptions{})
	back := e2.mustImport(path, graph.ImportOptions{})
	if back.ID != want.ID || !slices.Equal(back.DiffIDs, diffIDs) || !slices.Equal(back.Names, []string{testimage.DefaultName}) {
		t.Errorf("docker archive round trip: %s %v %v", back.ID, back.Names, back.DiffIDs)
	}
}

func TestStoreWriteLayerTar(t *testing.T) {
	e := newStoreEnv(t, graph.StoreOptions{})
	layout, diffIDs, want := testimage.BusyboxImage(t)
	e.mustImport(layout, graph.ImportOptions{})
	chain := graph.ChainIDs(diffIDs)
	var buf bytes.Buffer
	l, err := e.s.WriteLayerTar(context.Background(), chain[1].Encoded()[:10], &buf)
	if err != nil {
		t.Fatal(err)
	}
	if l.ChainID != chain[1] || !bytes.Equal(buf.Bytes(), want.Layers[1].Tar) {
		t.Errorf("layer tar of %s differs from the imported one", l.ChainID)
	}
	if _, err := e.s.WriteLayerTar(context.Background(), "sha256:0000", &buf); !errors.Is(err, graph.ErrNotFound) {
		t.Errorf("unknown layer: %v, want ErrNotFound", err)
	}
}
