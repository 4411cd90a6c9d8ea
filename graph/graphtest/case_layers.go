package graphtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/unionstack/unionstack/graph"
)

// testDeepChain: a chain of Features.MaxDepth (128) committed layers, each
// adding a file and changing the previous layer's file and a common one;
// the top sees every file in the right version, a view in the middle sees
// only its own history, and the chain is removed top down.
func testDeepChain(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	depth := s.features.depth()
	name := func(i int) string { return fmt.Sprintf("f%03d", i) }
	layer := func(i int) string { return fmt.Sprintf("layer-%03d", i) }
	parent := ""
	for i := 0; i < depth; i++ {
		entries := []Entry{File(name(i), fmt.Sprintf("added by %d", i), 0o644), File("common", fmt.Sprint(i), 0o644)}
		if i > 0 {
			entries = append(entries, File(name(i-1), fmt.Sprintf("changed by %d", i), 0o600))
		}
		// Through a mount every 16th layer; the others, where the driver
		// has layer directories, are written straight into them (as the
		// Store unpacks layers), which keeps 500-layer chains quick.
		if i%16 == 15 || !commitLayerDir(t, d, layer(i), parent, entries...) {
			CommitLayer(t, d, layer(i), parent, entries...)
		}
		parent = layer(i)
	}
	// want returns what the tree of layer top holds.
	want := func(top int) ([]Entry, []string) {
		entries := []Entry{File("common", fmt.Sprint(top), 0o644)}
		names := []string{"common"}
		for i := 0; i <= top; i++ {
			if i < top {
				entries = append(entries, File(name(i), fmt.Sprintf("changed by %d", i+1), 0o600))
			} else {
				entries = append(entries, File(name(i), fmt.Sprintf("added by %d", i), 0o644))
			}
			names = append(names, name(i))
		}
		return entries, names
	}
	top := PrepareTree(t, d, "top", layer(depth-1), File("top-only", "t", 0o644))
	entries, names := want(depth - 1)
	CheckTree(t, top, entries...)
	CheckNames(t, top, append(names, "top-only")...)

	mid := depth / 2
	view := ViewTree(t, d, "mid-view", layer(mid))
	entries, names = want(mid)
	CheckTree(t, view, entries...)
	CheckNames(t, view, names...)

	// Following Parent from the top reaches the base in depth steps.
	key, steps := "top", 0
	for key != "" && steps <= depth+1 {
		key = mustStat(t, d, key).Parent
		steps++
	}
	if steps != depth+1 {
		t.Errorf("parent chain of top has %d links, want %d", steps, depth+1)
	}

	Unmount(t, top)
	Unmount(t, view)
	must(t, d.Remove(ctx, "top"), "remove top")
	must(t, d.Remove(ctx, "mid-view"), "remove mid-view")
	for i := depth - 1; i >= 0; i-- {
		must(t, d.Remove(ctx, layer(i)), "remove %s", layer(i))
	}
	if left := keysOf(t, d); len(left) != 0 {
		t.Errorf("after removing the chain: %d snapshots left", len(left))
	}
}

// commitLayerDir is CommitLayer through the driver's layer directory,
// without a mount, for a graph.LayerDirer; entries must not delete
// anything. It returns false, having done nothing, when the driver has no
// usable layer directory.
func commitLayerDir(t testing.TB, d graph.Driver, name, parent string, entries ...Entry) bool {
	t.Helper()
	ld, ok := d.(graph.LayerDirer)
	if !ok {
		return false
	}
	ctx := context.Background()
	key := name + "-active"
	_, err := d.Prepare(ctx, key, parent)
	must(t, err, "prepare %s on %q", key, parent)
	dir, _, err := ld.LayerDir(ctx, key)
	if errors.Is(err, graph.ErrNotSupported) {
		must(t, d.Remove(ctx, key), "remove %s", key)
		return false
	}
	must(t, err, "layer dir of %s", key)
	WriteTree(t, dir, entries...)
	must(t, d.Commit(ctx, name, key), "commit %s as %s", key, name)
	return true
}

// testChangesAcrossLayers: files changed, deleted, moved and replaced by
// another type in an upper layer; the changes show in the active snapshot,
// in a child of its commit and in a view, and never in the layers below.
func testChangesAcrossLayers(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	base := []Entry{
		File("a", "A0", 0o644), File("b", "B0", 0o644), File("m", "M0", 0o644),
		File("d/x", "X0", 0o644), File("d/y", "Y0", 0o644), File("keep", "K", 0o644),
		File("file2dir", "F", 0o644), File("dir2file/z", "Z", 0o644), Symlink("link2file", "a"),
		File("appended", "one\n", 0o644), File("truncated", "long content", 0o644),
	}
	CommitLayer(t, d, "base", "", base...)
	baseView := ViewTree(t, d, "base-view", "base")

	up := PrepareTree(t, d, "l1-active", "base",
		File("a", "A1", 0o600),
		Absent("b"),
		Dir("file2dir", 0o755),
		File("file2dir/inside", "I", 0o644),
		File("dir2file", "now a file", 0o644),
		File("link2file", "was a link", 0o644),
		File("n", "N1", 0o644),
	)
	must(t, os.Rename(filepath.Join(up, "m"), filepath.Join(up, "d/m2")), "move m to d/m2")
	must(t, os.Rename(filepath.Join(up, "d/x"), filepath.Join(up, "d/x2")), "rename d/x to d/x2")
	appendTo(t, filepath.Join(up, "appended"), "two\n")
	must(t, os.Truncate(filepath.Join(up, "truncated"), 4), "truncate")
	l1 := []Entry{
		File("a", "A1", 0o600), Absent("b"), Absent("m"), File("d/m2", "M0", 0o644),
		Absent("d/x"), File("d/x2", "X0", 0o644), File("d/y", "Y0", 0o644), File("keep", "K", 0o644),
		Dir("file2dir", 0o755), File("file2dir/inside", "I", 0o644), File("dir2file", "now a file", 0o644),
		File("link2file", "was a link", 0o644), File("n", "N1", 0o644),
		File("appended", "one\ntwo\n", 0o644), File("truncated", "long", 0o644),
	}
	l1Names := []string{"a", "appended", "d", "dir2file", "file2dir", "keep", "link2file", "n", "truncated"}
	CheckTree(t, up, l1...)
	CheckNames(t, up, l1Names...)
	CheckNames(t, filepath.Join(up, "d"), "m2", "x2", "y")
	CheckTree(t, baseView, base...)
	Unmount(t, up)
	must(t, d.Commit(ctx, "l1", "l1-active"), "commit l1")

	// The next layer sees l1, brings back what l1 deleted and undoes a move.
	up2 := PrepareTree(t, d, "l2-active", "l1")
	CheckTree(t, up2, l1...)
	CheckNames(t, up2, l1Names...)
	must(t, os.Rename(filepath.Join(up2, "d/m2"), filepath.Join(up2, "m")), "move d/m2 back to m")
	must(t, os.Rename(filepath.Join(up2, "a"), filepath.Join(up2, "a-renamed")), "rename a")
	WriteTree(t, up2, File("b", "B2", 0o640), Absent("n"), File("a", "A2", 0o644), Absent("file2dir"), Dir("dir2file", 0o750))
	l2 := []Entry{
		File("a", "A2", 0o644), File("a-renamed", "A1", 0o600), File("b", "B2", 0o640), File("m", "M0", 0o644),
		Absent("d/m2"), Absent("n"), Absent("file2dir"), Dir("dir2file", 0o750), File("d/x2", "X0", 0o644),
	}
	CheckTree(t, up2, l2...)
	CheckNames(t, filepath.Join(up2, "dir2file"))
	Unmount(t, up2)
	must(t, d.Commit(ctx, "l2", "l2-active"), "commit l2")

	CheckTree(t, ViewTree(t, d, "l2-view", "l2"), l2...)
	CheckTree(t, ViewTree(t, d, "l1-view", "l1"), l1...)
	CheckTree(t, baseView, base...)
}

// appendTo appends text to the file at path.
func appendTo(t testing.TB, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err, "open %s for append", path)
	_, err = f.WriteString(text)
	must(t, err, "append to %s", path)
	must(t, f.Close(), "close %s", path)
}

// testDirRename: a directory that came from a lower layer is renamed (and
// its old name reused); the moved tree keeps its contents across commits.
func testDirRename(t *testing.T, s *suite) {
	if s.features.NoDirRename != "" {
		t.Skip("driver declares no directory rename across layers: " + s.features.NoDirRename)
	}
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	CommitLayer(t, d, "base", "",
		File("src/f", "f", 0o644), File("src/sub/file", "F", 0o600), File("src/sub/deep/x", "x", 0o644),
		Dir("src/emptydir", 0o711), File("other/o", "o", 0o644))

	up := PrepareTree(t, d, "l1-active", "base")
	must(t, os.Rename(filepath.Join(up, "src"), filepath.Join(up, "dst")), "rename src to dst")
	WriteTree(t, up, File("src/new", "N", 0o644))
	l1 := []Entry{
		File("dst/f", "f", 0o644), File("dst/sub/file", "F", 0o600), File("dst/sub/deep/x", "x", 0o644),
		Dir("dst/emptydir", 0o711), File("src/new", "N", 0o644), Absent("src/f"), Absent("src/sub"),
	}
	check := func(dir string) {
		t.Helper()
		CheckTree(t, dir, l1...)
		CheckNames(t, filepath.Join(dir, "dst"), "emptydir", "f", "sub")
		CheckNames(t, filepath.Join(dir, "src"), "new")
		CheckNames(t, dir, "dst", "other", "src")
	}
	check(up)
	Unmount(t, up)
	must(t, d.Commit(ctx, "l1", "l1-active"), "commit l1")

	up2 := PrepareTree(t, d, "l2-active", "l1")
	check(up2)
	// Move a subdirectory of the renamed one to the top, change a file in
	// the renamed tree, then rename the tree once more.
	must(t, os.Rename(filepath.Join(up2, "dst/sub"), filepath.Join(up2, "moved")), "rename dst/sub to moved")
	WriteTree(t, up2, File("dst/f", "f2", 0o644))
	must(t, os.Rename(filepath.Join(up2, "dst"), filepath.Join(up2, "again")), "rename dst to again")
	l2 := []Entry{
		File("moved/file", "F", 0o600), File("moved/deep/x", "x", 0o644), File("again/f", "f2", 0o644),
		Dir("again/emptydir", 0o711), Absent("dst"), Absent("again/sub"), File("src/new", "N", 0o644),
	}
	CheckTree(t, up2, l2...)
	CheckNames(t, up2, "again", "moved", "other", "src")
	Unmount(t, up2)
	must(t, d.Commit(ctx, "l2", "l2-active"), "commit l2")
	view := ViewTree(t, d, "l2-view", "l2")
	CheckTree(t, view, l2...)
	CheckNames(t, view, "again", "moved", "other", "src")
	CheckNames(t, filepath.Join(view, "again"), "emptydir", "f")
}

// testOpaqueDir: a lower directory emptied (rm -rf, then recreated) hides
// all its old children, also in layers above; emptying one child at a
// time does too.
func testOpaqueDir(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	CommitLayer(t, d, "base", "",
		File("d/a", "a", 0o644), File("d/b", "b", 0o644), File("d/sub/c", "c", 0o644),
		File("d/sub/deeper/e", "e", 0o644), File("keep/k", "k", 0o644), File("keep/j", "j", 0o644))

	up := PrepareTree(t, d, "l1-active", "base")
	must(t, os.RemoveAll(filepath.Join(up, "d")), "rm -rf d")
	WriteTree(t, up, Dir("d", 0o755), File("d/new", "n", 0o644), File("d/sub/fresh", "f", 0o644))
	check1 := func(dir string) {
		t.Helper()
		CheckNames(t, filepath.Join(dir, "d"), "new", "sub")
		CheckNames(t, filepath.Join(dir, "d/sub"), "fresh")
		CheckTree(t, dir, File("d/new", "n", 0o644), File("d/sub/fresh", "f", 0o644), Absent("d/a"), Absent("d/sub/c"), Absent("d/sub/deeper"))
	}
	check1(up)
	Unmount(t, up)
	must(t, d.Commit(ctx, "l1", "l1-active"), "commit l1")

	up2 := PrepareTree(t, d, "l2-active", "l1")
	check1(up2)
	must(t, os.Remove(filepath.Join(up2, "keep/k")), "rm keep/k")
	must(t, os.Remove(filepath.Join(up2, "keep/j")), "rm keep/j")
	WriteTree(t, up2, File("keep/k2", "k2", 0o644))
	CheckNames(t, filepath.Join(up2, "keep"), "k2")
	// And a directory emptied again one layer up.
	must(t, os.RemoveAll(filepath.Join(up2, "d/sub")), "rm -rf d/sub")
	WriteTree(t, up2, Dir("d/sub", 0o700))
	CheckNames(t, filepath.Join(up2, "d/sub"))
	Unmount(t, up2)
	must(t, d.Commit(ctx, "l2", "l2-active"), "commit l2")
	view := ViewTree(t, d, "l2-view", "l2")
	CheckNames(t, filepath.Join(view, "keep"), "k2")
	CheckNames(t, filepath.Join(view, "d"), "new", "sub")
	CheckNames(t, filepath.Join(view, "d/sub"))
	CheckTree(t, view, Dir("d/sub", 0o700), File("keep/k2", "k2", 0o644), File("d/new", "n", 0o644))
}
