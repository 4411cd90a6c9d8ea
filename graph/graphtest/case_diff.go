package graphtest

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
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/archive"
)

// diffBase is the lower tree of the diff/apply round trip.
func diffBase() []Entry {
	stamp := time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC)
	return []Entry{
		File("etc/config", "v=1\n", 0o644).Xattr("user.origin", "base"),
		File("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
		File("del", "to be deleted", 0o644),
		File("mv", "to be moved", 0o600).Owner(1000, 1000),
		File("opq/a", "a", 0o644), File("opq/sub/b", "b", 0o644),
		File("bin/tool", "tool", 0o755).Xattr("security.capability", CapNetBindService),
		File("h1", "linked", 0o644), Hardlink("h2", "h1"),
		Symlink("etc/link", "config"),
		Fifo("run/fifo", 0o600),
		CharDev("dev/null", 0o666, 1, 3),
		Dir("stable", 0o755).ModTime(stamp),
		File("stable/f", "unchanged", 0o644).ModTime(stamp),
	}
}

// diffChanges is what the upper snapshot of the round trip changes.
func diffChanges(t testing.TB, dir string) {
	t.Helper()
	WriteTree(t, dir,
		File("etc/config", "v=2\n", 0o640).Xattr("user.origin", "upper"),
		Absent("del"),
		File("new/file", "new", 0o644).Owner(5, 6),
		File("new/link1", "pair", 0o644), Hardlink("new/link2", "new/link1"),
		Symlink("new/sym", "../etc/config"),
		Fifo("new/fifo", 0o644),
		BlockDev("dev/loop9", 0o660, 7, 9),
		Sparse("new/sparse", 4<<20, "hole-y", 0o644, 0, 3<<20),
		File("bin/tool", "tool", 0o4755).Xattr("security.capability", CapNetBindService),
	)
	must(t, os.Rename(filepath.Join(dir, "mv"), filepath.Join(dir, "moved")), "rename mv")
	must(t, os.RemoveAll(filepath.Join(dir, "opq")), "rm -rf opq")
	WriteTree(t, dir, Dir("opq", 0o755), File("opq/c", "c", 0o644))
}

// testDiffApply: a diff of an active snapshot against its parent, applied
// to a new snapshot on the same parent, diffs to the same DiffID: through
// the mounted tree, and through the driver's layer directory when it is a
// graph.LayerDirer (whose WriteLayer must give the same DiffID too).
func testDiffApply(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	CommitLayer(t, d, "base", "", diffBase()...)
	lower := ViewTree(t, d, "lower", "base")

	// The base layer itself: a diff against nothing, applied to an empty snapshot.
	var baseTar bytes.Buffer
	baseID, err := archive.Diff(ctx, "", lower, &baseTar)
	must(t, err, "diff of base against nothing")
	empty := PrepareTree(t, d, "base-copy", "")
	applyTar(t, ctx, empty, baseTar.Bytes(), archive.FormatTree, baseID)
	CheckTree(t, empty, diffBase()...)
	CheckSameTree(t, empty, lower, ManifestOptions{Times: true})
	sameDiff(t, ctx, "", empty, baseTar.Bytes(), baseID, "base applied to an empty snapshot")

	upper := PrepareTree(t, d, "upper", "base")
	diffChanges(t, upper)
	var upperTar bytes.Buffer
	upperID, err := archive.Diff(ctx, lower, upper, &upperTar)
	must(t, err, "diff of upper against lower")
	checkChangesTar(t, upperTar.Bytes())

	// Applied onto a mounted tree.
	tree := PrepareTree(t, d, "applied-tree", "base")
	applyTar(t, ctx, tree, upperTar.Bytes(), archive.FormatTree, upperID)
	sameDiff(t, ctx, lower, tree, upperTar.Bytes(), upperID, "upper applied onto a mounted tree")
	CheckTree(t, tree, File("etc/config", "v=2\n", 0o640).Xattr("user.origin", "upper"), Absent("del"),
		File("moved", "to be moved", 0o600).Owner(1000, 1000), Absent("mv"), File("opq/c", "c", 0o644),
		Absent("opq/a"), Absent("opq/sub"), Hardlink("new/link2", "new/link1"), Hardlink("h2", "h1"),
		File("bin/tool", "tool", 0o4755).Xattr("security.capability", CapNetBindService),
		Sparse("new/sparse", 4<<20, "hole-y", 0o644, 0, 3<<20), BlockDev("dev/loop9", 0o660, 7, 9))
	CheckNames(t, filepath.Join(tree, "opq"), "c")
	CheckSameTree(t, tree, upper, ManifestOptions{})

	ld, ok := d.(graph.LayerDirer)
	if !ok {
		t.Logf("driver is no graph.LayerDirer: native apply and WriteLayer not tested")
		return
	}
	// WriteLayer of the upper snapshot's own directory gives the same layer.
	Unmount(t, upper)
	if dir, format, err := ld.LayerDir(ctx, "upper"); errors.Is(err, graph.ErrNotSupported) {
		t.Logf("layer dir of upper not usable: %v", err)
	} else if err != nil {
		t.Errorf("layer dir of upper: %v", err)
	} else {
		var buf bytes.Buffer
		id, err := archive.WriteLayer(ctx, dir, format, &buf)
		must(t, err, "write layer of %s (%v)", dir, format)
		checkNativeLayer(t, ctx, d, ld, buf.Bytes(), id, upperTar.Bytes(), upperID, lower, tree)
	}
	// Applied natively into a new snapshot's layer directory, then mounted.
	if _, err := d.Prepare(ctx, "applied-native", "base"); err != nil {
		t.Fatalf("prepare applied-native: %v", err)
	}
	dir, format, err := ld.LayerDir(ctx, "applied-native")
	if errors.Is(err, graph.ErrNotSupported) {
		t.Logf("layer dir of a new snapshot not usable: %v", err)
		return
	}
	must(t, err, "layer dir of applied-native")
	applyTar(t, ctx, dir, upperTar.Bytes(), format, upperID)
	native := MountKey(t, d, "applied-native")
	sameDiff(t, ctx, lower, native, upperTar.Bytes(), upperID, "upper applied natively ("+format.String()+")")
	CheckNames(t, filepath.Join(native, "opq"), "c")
	CheckSameTree(t, native, tree, ManifestOptions{})
}

// checkNativeLayer checks the layer WriteLayer wrote of the upper
// snapshot's layer dir (native, with DiffID id). Where it says the same
// in the same words as the tree diff, the DiffIDs are equal. It may say it
// in other words — an opaque marker where the tree diff whites out each
// old child, which is the faithful form of a directory removed and made
// again — and then it must still be a correct layer: applied onto the
// base it gives the tree want, and it round-trips natively to the same
// DiffID.
func checkNativeLayer(t *testing.T, ctx context.Context, d graph.Driver, ld graph.LayerDirer, native []byte, id digest.Digest, treeTar []byte, treeID digest.Digest, lower, want string) {
	t.Helper()
	if id == treeID {
		return
	}
	differ := tarDifference(native, treeTar)
	opaque := false
	for _, h := range tarHeaders(t, native) {
		if filepath.Base(h.Name) == archive.WhiteoutOpaque {
			opaque = true
		}
	}
	if !opaque {
		t.Errorf("WriteLayer of upper's layer dir: DiffID %s, mounted diff gave %s, and not for opaque markers\n%s", id, treeID, differ)
		return
	}
	t.Logf("native layer uses opaque markers where the tree diff whites out names (DiffID %s vs %s)", id, treeID)
	applied := PrepareTree(t, d, "applied-native-layer", "base")
	applyTar(t, ctx, applied, native, archive.FormatTree, id)
	CheckSameTree(t, applied, want, ManifestOptions{})
	sameDiff(t, ctx, lower, applied, treeTar, treeID, "native layer applied onto a mounted tree")

	if _, err := d.Prepare(ctx, "native-roundtrip", "base"); err != nil {
		t.Fatalf("prepare native-roundtrip: %v", err)
	}
	dir, format, err := ld.LayerDir(ctx, "native-roundtrip")
	must(t, err, "layer dir of native-roundtrip")
	applyTar(t, ctx, dir, native, format, id)
	var again bytes.Buffer
	id2, err := archive.WriteLayer(ctx, dir, format, &again)
	must(t, err, "write layer of native-roundtrip")
	if id2 != id {
		t.Errorf("native layer applied natively and written again: DiffID %s, want %s\n%s", id2, id, tarDifference(again.Bytes(), native))
	}
}

// applyTar applies the layer data onto root in format and checks the
// DiffID Apply reports.
func applyTar(t testing.TB, ctx context.Context, root string, data []byte, format archive.Format, want digest.Digest) {
	t.Helper()
	res, err := archive.Apply(ctx, root, bytes.NewReader(data), archive.ApplyOptions{Format: format})
	must(t, err, "apply onto %s (%v)", root, format)
	if res.DiffID != want || res.Size != int64(len(data)) {
		t.Errorf("apply onto %s: DiffID %s size %d, want %s size %d", root, res.DiffID, res.Size, want, len(data))
	}
}

// sameDiff diffs upper against lower and checks it reproduces want.
func sameDiff(t testing.TB, ctx context.Context, lower, upper string, wantTar []byte, want digest.Digest, what string) {
	t.Helper()
	var buf bytes.Buffer
	id, err := archive.Diff(ctx, lower, upper, &buf)
	must(t, err, "diff for %s", what)
	if id != want {
		t.Errorf("%s: diff again gives DiffID %s, want %s\n%s", what, id, want, tarDifference(buf.Bytes(), wantTar))
	}
}

// checkChangesTar checks that the diff of diffChanges holds what it must:
// the whiteout of del and mv, the opaque marker (or a whiteout per old
// child) of opq, and not the unchanged stable/ directory.
func checkChangesTar(t testing.TB, data []byte) {
	t.Helper()
	names := map[string]bool{}
	for _, h := range tarHeaders(t, data) {
		names[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = true
	}
	for _, want := range []string{".wh.del", ".wh.mv", "moved", "new/file", "etc/config", "opq/c"} {
		if !names[want] {
			t.Errorf("diff tar lacks %s; has %v", want, sortedSet(names))
		}
	}
	if !names["opq/"+archive.WhiteoutOpaque] && !(names["opq/.wh.a"] && names["opq/.wh.sub"]) {
		t.Errorf("diff tar neither makes opq opaque nor whites out its old children; has %v", sortedSet(names))
	}
	for _, bad := range []string{"stable", "stable/f", "etc/passwd"} {
		if names[bad] {
			t.Errorf("diff tar holds the unchanged %s", bad)
		}
	}
}

// tarHeaders lists the headers of a tar.
func tarHeaders(t testing.TB, data []byte) []*tar.Header {
	t.Helper()
	var hs []*tar.Header
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs
		}
		if err != nil {
			t.Errorf("read diff tar: %v", err)
			return hs
		}
		hs = append(hs, h)
	}
}

// tarDifference describes how two tars differ, header by header.
func tarDifference(got, want []byte) string {
	list := func(data []byte) []string {
		var out []string
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			h, err := tr.Next()
			if err != nil {
				if err != io.EOF {
					out = append(out, "error: "+err.Error())
				}
				return out
			}
			out = append(out, fmt.Sprintf("%s type=%c mode=%o uid=%d gid=%d size=%d mtime=%s link=%q xattrs=%v",
				h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Size, h.ModTime.Format(time.RFC3339Nano), h.Linkname, h.PAXRecords))
		}
	}
	g, w := list(got), list(want)
	var b strings.Builder
	for i := 0; i < len(g) || i < len(w); i++ {
		var gi, wi string
		if i < len(g) {
			gi = g[i]
		}
		if i < len(w) {
			wi = w[i]
		}
		if gi != wi {
			fmt.Fprintf(&b, "  entry %d:\n    got  %s\n    want %s\n", i, gi, wi)
		}
	}
	return b.String()
}

// sortedSet lists the members of a set in order.
func sortedSet(m map[string]bool) []string {
	s := make(map[string]string, len(m))
	for k := range m {
		s[k] = ""
	}
	return sortedKeys(s)
}
