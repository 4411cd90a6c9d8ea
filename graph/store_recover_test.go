package graph_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testimage"
)

// TestStoreRecoverOrphans leaves behind, with the store closed, what a
// crash at each step could: an unpack snapshot, an export view, a
// committed layer snapshot without a record (with a child), a container
// snapshot without a record, tar-split data and scratch files without
// owners. OpenStore removes all of it and keeps what is recorded.
func TestStoreRecoverOrphans(t *testing.T) {
	ctx := context.Background()
	e := newStoreEnv(t, graph.StoreOptions{})
	layout, diffIDs, _ := testimage.BusyboxImage(t)
	e.mustImport(layout, graph.ImportOptions{})
	top := string(graph.ChainIDs(diffIDs)[2])
	if _, err := e.s.CreateContainer(ctx, "kept", testimage.DefaultName); err != nil {
		t.Fatal(err)
	}
	e.s.Close()
	e.s = nil
	before := e.snapshots()

	d := e.d
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := d.Prepare(ctx, "unpack-left", top, graph.WithLabels(map[string]string{graph.LabelUnpack: "x"}))
	must(err)
	_, err = d.View(ctx, "export-left", top, graph.WithLabels(map[string]string{graph.LabelExport: "x"}))
	must(err)
	_, err = d.Prepare(ctx, "orphan-active", top)
	must(err)
	must(d.Commit(ctx, "sha256:orphan", "orphan-active", graph.WithLabels(map[string]string{graph.LabelLayer: "sha256:x"})))
	_, err = d.Prepare(ctx, "orphan-child", "sha256:orphan")
	must(err)
	must(d.Commit(ctx, "sha256:orphanchild", "orphan-child", graph.WithLabels(map[string]string{graph.LabelLayer: "sha256:y"})))
	_, err = d.Prepare(ctx, "container-ghost", top, graph.WithLabels(map[string]string{graph.LabelContainer: "ghost"}))
	must(err)
	// Someone else's snapshot: no store label, left alone.
	_, err = d.Prepare(ctx, "foreign", top)
	must(err)
	must(os.MkdirAll(filepath.Join(e.storeDir, "layers", "00deadbeef"), 0o700))
	must(os.WriteFile(filepath.Join(e.storeDir, "tmp", "tar-split-1.json.gz"), []byte("x"), 0o600))

	s, err := graph.OpenStore(e.storeDir, d)
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	want := append(slices.Clone(before), "Active foreign")
	slices.Sort(want)
	if got := e.snapshots(); !slices.Equal(got, want) {
		t.Errorf("after recovery %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(e.storeDir, "layers", "00deadbeef")); !os.IsNotExist(err) {
		t.Errorf("orphan tar-split dir kept: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(e.storeDir, "tmp")); len(left) != 0 {
		t.Errorf("scratch files kept: %v", left)
	}
	if _, err := e.s.Container(ctx, "kept"); err != nil {
		t.Errorf("recorded container lost: %v", err)
	}
	if ls, _ := e.s.Layers(ctx); len(ls) != 3 {
		t.Errorf("layers after recovery: %v", ls)
	}
}

// TestStoreConcurrentImports imports the same image from three goroutines
// at once: each layer is unpacked and committed once, all succeed.
func TestStoreConcurrentImports(t *testing.T) {
	e := newStoreEnv(t, graph.StoreOptions{})
	layout, _, img := testimage.BusyboxImage(t)
	archivePath, _ := testimage.BusyboxDockerArchive(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := layout
			if i == 1 {
				src = archivePath
			}
			_, errs[i] = e.s.Import(context.Background(), src, graph.ImportOptions{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("import %d: %v", i, err)
		}
	}
	if got := e.snapshots(); len(got) != 3 {
		t.Errorf("snapshots %v", got)
	}
	if imgs, _ := e.s.Images(context.Background()); len(imgs) != 1 || imgs[0].ID != img.ID {
		t.Errorf("images %v", imgs)
	}
}

// TestStoreImportDockerArchiveMulti imports an old-style docker-save
// archive holding two images, the second reusing the first's layer
// through a symlink, as docker save wrote for shared layers.
func TestStoreImportDockerArchiveMulti(t *testing.T) {
	ctx := context.Background()
	e := newStoreEnv(t, graph.StoreOptions{})
	l0 := testimage.NewTarBuilder().File("a", 0o644, []byte("a")).Layer()
	l1 := testimage.NewTarBuilder().File("b", 0o644, []byte("b")).Layer()
	one := testimage.NewImage("one:1", []testimage.Layer{l0}, testimage.RunConfig)
	two := testimage.NewImage("two:1", []testimage.Layer{l0, l1}, testimage.RunConfig)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data []byte) {
		h.Size = int64(len(data))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		h.Mode = 0o644
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	add(&tar.Header{Name: "aaa/layer.tar"}, l0.Tar)
	add(&tar.Header{Name: "bbb/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../aaa/layer.tar"}, nil)
	add(&tar.Header{Name: "ccc/layer.tar"}, l1.Tar)
	add(&tar.Header{Name: one.ID.Encoded() + ".json"}, one.Config)
	add(&tar.Header{Name: two.ID.Encoded() + ".json"}, two.Config)
	manifest := `[{"Config":"` + one.ID.Encoded() + `.json","RepoTags":["one:1"],"Layers":["aaa/layer.tar"]},` +
		`{"Config":"` + two.ID.Encoded() + `.json","RepoTags":["two:1","two:latest"],"Layers":["bbb/layer.tar","ccc/layer.tar"]}]`
	add(&tar.Header{Name: "manifest.json"}, []byte(manifest))
	tw.Close()
	path := filepath.Join(t.TempDir(), "multi.tar")
	os.WriteFile(path, buf.Bytes(), 0o644)

	if _, err := e.s.Import(ctx, path, graph.ImportOptions{Name: "x:1"}); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("one name for two images: %v, want ErrInvalidArgument", err)
	}
	imgs, err := e.s.Import(ctx, path, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].ID != one.ID || imgs[1].ID != two.ID || !slices.Equal(imgs[1].Names, []string{"two:1", "two:latest"}) {
		t.Errorf("imported %+v", imgs)
	}
	if got := e.snapshots(); len(got) != 2 {
		t.Errorf("snapshots %v, want 2 layers", got)
	}
	// A short name finds NAME:latest.
	if img, err := e.s.Image(ctx, "two"); err != nil || img.ID != two.ID {
		t.Errorf("Image(two) = %v, %v", img.ID, err)
	}
}
