package overlay

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/archive"
	"github.com/unionstack/unionstack/internal/testenv"
)

// A directory renamed across layers is a redirect in the upper dir, which
// LayerDir must refuse; the naive diff (mount and compare) of the snapshot
// is then right: applied onto a fresh snapshot it gives the same tree, and
// that snapshot's upper dir (no redirect) gives the same layer natively.
func TestLayerDirRefusesRedirect(t *testing.T) {
	d, root := newTestDriver(t, nil)
	f, _ := Probe(root)
	testenv.Need(t, f[FeatureRedirectDir] == "on", "overlayfs redirect_dir is not usable on this host")
	ctx := context.Background()
	commitLayer(t, d, "base", "", map[string]string{"dir/f": "f", "dir/sub/g": "g", "other": "o"})

	mounts, err := d.Prepare(ctx, "c", "base")
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountTest(t, mounts)
	if err := os.Rename(filepath.Join(mnt, "dir"), filepath.Join(mnt, "moved")); err != nil {
		t.Fatalf("rename a lower dir: %v", err)
	}
	writeFiles(t, mnt, map[string]string{"moved/new": "n"})

	_, _, err = d.(graph.LayerDirer).LayerDir(ctx, "c")
	if !errors.Is(err, graph.ErrNotSupported) || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("LayerDir after a dir rename: err %v, want ErrNotSupported naming the redirect", err)
	}

	view, err := d.View(ctx, "base-view", "base")
	if err != nil {
		t.Fatal(err)
	}
	lower := mountTest(t, view)
	var layer bytes.Buffer
	diffID, err := archive.Diff(ctx, lower, mnt, &layer)
	if err != nil {
		t.Fatalf("naive Diff: %v", err)
	}

	// Applied natively into a fresh upper dir: the same tree, and that
	// upper dir (no redirect) gives the same layer natively.
	mounts2, err := d.Prepare(ctx, "c2", "base")
	if err != nil {
		t.Fatal(err)
	}
	res, err := archive.Apply(ctx, layerDir(t, d, "c2"), bytes.NewReader(layer.Bytes()), archive.ApplyOptions{Format: archive.FormatOverlay})
	if err != nil {
		t.Fatalf("native Apply: %v", err)
	}
	if res.DiffID != diffID {
		t.Errorf("Apply DiffID %s, Diff DiffID %s", res.DiffID, diffID)
	}
	native, err := archive.WriteLayer(ctx, layerDir(t, d, "c2"), archive.FormatOverlay, io.Discard)
	if err != nil {
		t.Fatalf("native WriteLayer of the re-applied snapshot: %v", err)
	}
	if native != diffID {
		t.Errorf("native diff of the re-applied snapshot %s, naive diff of the original %s", native, diffID)
	}
	mnt2 := mountTest(t, mounts2)
	if got, want := treeSummary(t, mnt2), treeSummary(t, mnt); got != want {
		t.Errorf("tree after native apply differs:\n--- applied\n%s\n--- original\n%s", got, want)
	}
	if again, err := archive.Diff(ctx, lower, mnt2, io.Discard); err != nil || again != diffID {
		t.Errorf("naive diff of the re-applied snapshot: %s %v, want %s", again, err, diffID)
	}

	// Applied onto the mounted tree of another snapshot: the same tree.
	mounts3, err := d.Prepare(ctx, "c3", "base")
	if err != nil {
		t.Fatal(err)
	}
	mnt3 := mountTest(t, mounts3)
	if _, err := archive.Apply(ctx, mnt3, bytes.NewReader(layer.Bytes()), archive.ApplyOptions{Format: archive.FormatTree}); err != nil {
		t.Fatalf("Apply onto a mounted tree: %v", err)
	}
	if got, want := treeSummary(t, mnt3), treeSummary(t, mnt); got != want {
		t.Errorf("tree after apply differs:\n--- applied\n%s\n--- original\n%s", got, want)
	}
	if _, err := os.Stat(filepath.Join(mnt3, "dir")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir still visible after apply: %v", err)
	}
}

// A normal change (files added, modified, deleted, a mode changed, a
// symlink added, a directory removed, no new directory) gives the same layer natively (from
// the upper dir) and naively (comparing the mounted trees).
func TestNativeWriteLayerMatchesNaiveDiff(t *testing.T) {
	d, _ := newTestDriver(t, nil)
	ctx := context.Background()
	commitLayer(t, d, "base", "", map[string]string{
		"a/keep": "k", "a/modify": "m", "a/delete": "d", "a/deldir/x": "x",
		"top": "t", "x/y": "y", "x/z": "z",
	})
	mounts, err := d.Prepare(ctx, "c", "base")
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountTest(t, mounts)
	writeFiles(t, mnt, map[string]string{"a/modify": "modified", "a/new": "new", "x/new": "new"})
	for _, p := range []string{"a/delete", "a/deldir", "x/y"} {
		if err := os.RemoveAll(filepath.Join(mnt, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(mnt, "top"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a/keep", filepath.Join(mnt, "link")); err != nil {
		t.Fatal(err)
	}

	dir := layerDir(t, d, "c")
	var nativeTar bytes.Buffer
	native, err := archive.WriteLayer(ctx, dir, archive.FormatOverlay, &nativeTar)
	if err != nil {
		t.Fatalf("native WriteLayer: %v", err)
	}
	view, err := d.View(ctx, "base-view", "base")
	if err != nil {
		t.Fatal(err)
	}
	var naiveTar bytes.Buffer
	naive, err := archive.Diff(ctx, mountTest(t, view), mnt, &naiveTar)
	if err != nil {
		t.Fatalf("naive Diff: %v", err)
	}
	if native != naive {
		t.Errorf("native DiffID %s != naive DiffID %s\n--- native\n%s\n--- naive\n%s",
			native, naive, tarListing(t, nativeTar.Bytes()), tarListing(t, naiveTar.Bytes()))
	}

	// Native apply writes overlay whiteouts into a fresh upper dir: the
	// mounted result is the same tree.
	mounts3, err := d.Prepare(ctx, "c3", "base")
	if err != nil {
		t.Fatal(err)
	}
	res, err := archive.Apply(ctx, layerDir(t, d, "c3"), bytes.NewReader(nativeTar.Bytes()), archive.ApplyOptions{Format: archive.FormatOverlay})
	if err != nil {
		t.Fatalf("native Apply: %v", err)
	}
	if res.DiffID != native {
		t.Errorf("native Apply DiffID %s, want %s", res.DiffID, native)
	}
	if got, want := treeSummary(t, mountTest(t, mounts3)), treeSummary(t, mnt); got != want {
		t.Errorf("tree after native apply differs:\n--- applied\n%s\n--- original\n%s", got, want)
	}
}

// An opaque directory (removed and made again), and with redirect_dir a
// new directory (which the kernel makes opaque), make LayerDir refuse: the
// native diff would hold an opaque marker where the tree comparison holds
// whiteouts. The naive diff applied natively gives the same tree.
func TestLayerDirRefusesOpaqueDir(t *testing.T) {
	d, root := newTestDriver(t, nil)
	ctx := context.Background()
	ld := d.(graph.LayerDirer)
	commitLayer(t, d, "base", "", map[string]string{"etc/a": "a", "etc/b": "b", "keep": "k"})
	mounts, err := d.Prepare(ctx, "c", "base")
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountTest(t, mounts)
	if err := os.RemoveAll(filepath.Join(mnt, "etc")); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, mnt, map[string]string{"etc/c": "c"})
	_, _, err = ld.LayerDir(ctx, "c")
	if !errors.Is(err, graph.ErrNotSupported) || !strings.Contains(err.Error(), "opaque") {
		t.Fatalf("LayerDir with an opaque dir: err %v, want ErrNotSupported naming it", err)
	}

	mountsNew, err := d.Prepare(ctx, "new-dir", "base")
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, mountTest(t, mountsNew), map[string]string{"newdir/f": "f"})
	_, _, err = ld.LayerDir(ctx, "new-dir")
	if f, _ := Probe(root); f[FeatureRedirectDir] == "on" {
		if !errors.Is(err, graph.ErrNotSupported) {
			t.Errorf("LayerDir after mkdir in a merged dir with redirect_dir=on: err %v, want ErrNotSupported", err)
		}
	} else if err != nil {
		t.Errorf("LayerDir after mkdir in a merged dir without redirect_dir: %v", err)
	}

	view, err := d.View(ctx, "base-view", "base")
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	diffID, err := archive.Diff(ctx, mountTest(t, view), mnt, &layer)
	if err != nil {
		t.Fatal(err)
	}
	mounts2, err := d.Prepare(ctx, "c2", "base")
	if err != nil {
		t.Fatal(err)
	}
	res, err := archive.Apply(ctx, layerDir(t, d, "c2"), bytes.NewReader(layer.Bytes()), archive.ApplyOptions{Format: archive.FormatOverlay})
	if err != nil {
		t.Fatal(err)
	}
	if res.DiffID != diffID {
		t.Errorf("Apply DiffID %s, want %s", res.DiffID, diffID)
	}
	if got, want := treeSummary(t, mountTest(t, mounts2)), treeSummary(t, mnt); got != want {
		t.Errorf("tree after apply differs:\n--- applied\n%s\n--- original\n%s", got, want)
	}
}

// A snapshot without parents is a plain bind mount of a full tree:
// LayerDir says FormatTree, and a 0/0 character device made there is a file
// that the diff keeps, not a whiteout.
func TestLayerDirOfBaseIsTree(t *testing.T) {
	d, _ := newTestDriver(t, nil)
	ctx := context.Background()
	mounts, err := d.Prepare(ctx, "c", "")
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountTest(t, mounts)
	if err := mknodWhiteout(filepath.Join(mnt, "dev0")); err != nil {
		t.Fatal(err)
	}
	dir, format, err := d.(graph.LayerDirer).LayerDir(ctx, "c")
	if err != nil || format != archive.FormatTree {
		t.Fatalf("LayerDir of a base snapshot: %s %v %v, want FormatTree", dir, format, err)
	}
	var layer bytes.Buffer
	if _, err := archive.Diff(ctx, "", dir, &layer); err != nil {
		t.Fatal(err)
	}
	if listing := tarListing(t, layer.Bytes()); !strings.Contains(listing, "3 dev0 ") {
		t.Errorf("diff of the base layer lacks the character device dev0:\n%s", listing)
	}
}

// tarListing lists a tar's entries, one line each, for failure messages.
func tarListing(t testing.TB, data []byte) string {
	t.Helper()
	var b strings.Builder
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintf(&b, "error: %v\n", err)
			break
		}
		fmt.Fprintf(&b, "%c %s mode=%o uid=%d size=%d mtime=%s link=%q pax=%v\n",
			h.Typeflag, h.Name, h.Mode, h.Uid, h.Size, h.ModTime.Format("15:04:05.000000000"), h.Linkname, h.PAXRecords)
	}
	return b.String()
}
