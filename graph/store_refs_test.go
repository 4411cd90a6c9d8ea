package graph_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testimage"
)

// refsOf returns the RefCount of each layer by ChainID.
func (e *stEnv) refsOf() map[digest.Digest]int {
	e.t.Helper()
	ls, err := e.s.Layers(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[digest.Digest]int{}
	for _, l := range ls {
		out[l.ChainID] = l.RefCount
	}
	return out
}

// TestStoreRefCountsAndPrune imports two images sharing their first two
// layers, a container on one, and checks reference counts, the refusals
// of RemoveLayer and RemoveImage, and what Prune and RemoveImage remove.
func TestStoreRefCountsAndPrune(t *testing.T) {
	ctx := context.Background()
	e := newStoreEnv(t, graph.StoreOptions{})
	a := testimage.Busybox(t)
	bLayers := []testimage.Layer{a.Layers[0], a.Layers[1], testimage.NewTarBuilder().File("only-in-b", 0o644, []byte("b")).Layer()}
	b := testimage.NewImage("b:1", bLayers, testimage.RunConfig)
	for _, im := range []*testimage.Image{a, b} {
		dir := t.TempDir()
		im.WriteOCILayout(dir)
		e.mustImport(dir, graph.ImportOptions{})
	}
	ca, cb := graph.ChainIDs(a.DiffIDs()), graph.ChainIDs(b.DiffIDs())
	refs := e.refsOf()
	want := map[digest.Digest]int{ca[0]: 1, ca[1]: 2, ca[2]: 1, cb[2]: 1}
	if !mapsEqual(refs, want) {
		t.Errorf("refcounts %v, want %v", refs, want)
	}
	if removed, err := e.s.Prune(ctx); err != nil || len(removed) != 0 {
		t.Errorf("prune with everything in use: %v, %v", removed, err)
	}
	if err := e.s.RemoveLayer(ctx, string(ca[1])); !errors.Is(err, graph.ErrFailedPrecondition) {
		t.Errorf("RemoveLayer of a parent: %v, want ErrFailedPrecondition", err)
	} else {
		t.Logf("error: %v", err)
	}
	if err := e.s.RemoveLayer(ctx, string(ca[2])); !errors.Is(err, graph.ErrFailedPrecondition) {
		t.Errorf("RemoveLayer of an image's top: %v, want ErrFailedPrecondition", err)
	}

	if _, err := e.s.CreateContainer(ctx, "ctr", testimage.DefaultName); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.CreateContainer(ctx, "ctr", testimage.DefaultName); !errors.Is(err, graph.ErrAlreadyExists) {
		t.Errorf("second container with the same id: %v", err)
	}
	if got := e.refsOf()[ca[2]]; got != 2 {
		t.Errorf("refcount of a's top with a container: %d, want 2", got)
	}
	if _, err := e.s.RemoveImage(ctx, testimage.DefaultName, false); !errors.Is(err, graph.ErrFailedPrecondition) {
		t.Errorf("RemoveImage while a container uses it: %v, want ErrFailedPrecondition", err)
	} else {
		t.Logf("error: %v", err)
	}

	// Removing b takes only its own top layer.
	removed, err := e.s.RemoveImage(ctx, "b:1", false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []digest.Digest{cb[2]}) {
		t.Errorf("RemoveImage(b) removed %v, want [%s]", removed, cb[2])
	}
	// Forced removal of a keeps the layers the container is on.
	removed, err = e.s.RemoveImage(ctx, testimage.DefaultName, true)
	if err != nil || len(removed) != 0 {
		t.Errorf("forced RemoveImage(a): %v, %v", removed, err)
	}
	if removed, _ := e.s.Prune(ctx); len(removed) != 0 {
		t.Errorf("prune removed %v under a container", removed)
	}
	if err := e.s.RemoveContainer(ctx, "ctr"); err != nil {
		t.Fatal(err)
	}
	removed, err = e.s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3 {
		t.Errorf("prune removed %v, want the 3 layers of a", removed)
	}
	if snaps := e.snapshots(); len(snaps) != 0 {
		t.Errorf("snapshots left: %v", snaps)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.storeDir, "layers")); len(ents) != 0 {
		t.Errorf("tar-split data left: %v", ents)
	}
	if err := e.s.RemoveContainer(ctx, "ctr"); !errors.Is(err, graph.ErrNotFound) {
		t.Errorf("second RemoveContainer: %v, want ErrNotFound", err)
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestStoreCommitContainer changes a container's tree, commits it as a
// layer, and checks the layer's tar, that the container stays usable,
// that the layer round-trips through export and import, and prune.
func TestStoreCommitContainer(t *testing.T) {
	ctx := context.Background()
	e := newStoreEnv(t, graph.StoreOptions{})
	layout, diffIDs, _ := testimage.BusyboxImage(t)
	base := e.mustImport(layout, graph.ImportOptions{})
	mounts, err := e.s.CreateContainer(ctx, "work", testimage.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	root := stMountTree(t, mounts)
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("container\n"), 0o644)
	os.Remove(filepath.Join(root, "etc/group"))
	os.MkdirAll(filepath.Join(root, "srv/app"), 0o755)
	os.WriteFile(filepath.Join(root, "srv/app/data"), []byte("hello"), 0o600)

	l, err := e.s.CommitContainer(ctx, "work")
	if err != nil {
		t.Fatal(err)
	}
	top := base.TopLayer()
	if l.Parent != top || l.ChainID != graph.ChainID(top, l.DiffID) || l.Depth != 4 {
		t.Errorf("committed layer %+v", l)
	}
	var buf bytes.Buffer
	if _, err := e.s.WriteLayerTar(ctx, string(l.ChainID), &buf); err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(buf.Bytes()) != l.DiffID {
		t.Errorf("layer tar does not match its DiffID")
	}
	names := tarNames(t, buf.Bytes())
	for _, n := range []string{"etc/hostname", "etc/.wh.group", "srv/app/data"} {
		if !slices.Contains(names, n) {
			t.Errorf("layer tar lacks %s: %v", n, names)
		}
	}
	var diff bytes.Buffer
	if d, err := e.s.ContainerDiff(ctx, "work", &diff); err != nil || d != l.DiffID {
		t.Errorf("ContainerDiff = %s, %v; want %s", d, err, l.DiffID)
	}

	// The container goes on; its next commit is another layer.
	os.WriteFile(filepath.Join(root, "more"), []byte("more"), 0o644)
	l2, err := e.s.CommitContainer(ctx, "work")
	if err != nil {
		t.Fatal(err)
	}
	if l2.ChainID == l.ChainID || l2.Parent != top {
		t.Errorf("second commit %+v", l2)
	}

	cfg := imageConfigOf(t, e, testimage.DefaultName)
	img, err := e.s.CreateImage(ctx, "committed:1", l.ChainID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(diffIDs), l.DiffID); !slices.Equal(img.DiffIDs, want) {
		t.Errorf("committed image diff ids %v, want %v", img.DiffIDs, want)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := e.s.Export(ctx, "committed:1", out, graph.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	e2 := newStoreEnv(t, graph.StoreOptions{})
	back := e2.mustImport(out, graph.ImportOptions{})
	if back.ID != img.ID || !slices.Equal(back.DiffIDs, img.DiffIDs) {
		t.Errorf("committed image round trip: %v", back.DiffIDs)
	}
	c2, err := e2.s.CreateContainer(ctx, "check", "committed:1")
	if err != nil {
		t.Fatal(err)
	}
	r2 := stMountTree(t, c2)
	if data, _ := os.ReadFile(filepath.Join(r2, "srv/app/data")); string(data) != "hello" {
		t.Errorf("srv/app/data = %q", data)
	}
	if _, err := os.Lstat(filepath.Join(r2, "etc/group")); err == nil {
		t.Errorf("etc/group not deleted in the committed image")
	}

	// The second commit has no image: prune takes it, and only it.
	removed, err := e.s.Prune(ctx)
	if err != nil || !slices.Equal(removed, []digest.Digest{l2.ChainID}) {
		t.Errorf("prune removed %v, %v; want [%s]", removed, err, l2.ChainID)
	}
	if _, err := e.s.CommitContainer(ctx, "nosuch"); !errors.Is(err, graph.ErrNotFound) {
		t.Errorf("commit of an unknown container: %v", err)
	}
}

// tarNames lists the entry names of a tar.
func tarNames(t *testing.T, data []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}
