package fuse

import (
	"os"
	"path/filepath"
	"testing"
)

// A layer is marked rr only while it holds no whiteout anywhere; a marker
// left by an earlier commit of the same snapshot goes when the layer has
// gained one since (a commit can be undone and the snapshot changed).
func TestRealROMarker(t *testing.T) {
	b := &backend{root: t.TempDir()}
	fs := b.fsDir("7")
	if err := os.MkdirAll(filepath.Join(fs, "etc/deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fs, "etc/deep/file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The union's own directories (link index, work dir) hide nothing.
	for _, meta := range []string{".wh..wh.plnk", ".wh..wh.orph"} {
		if err := os.Mkdir(filepath.Join(fs, meta), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.markRealRO("7"); err != nil {
		t.Fatal(err)
	}
	if !b.isRealRO("7") {
		t.Fatal("a layer without whiteouts is not marked rr")
	}
	if err := os.WriteFile(filepath.Join(fs, "etc/deep/.wh.gone"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := b.markRealRO("7"); err != nil {
		t.Fatal(err)
	}
	if b.isRealRO("7") {
		t.Error("a layer with a whiteout deep down is still marked rr")
	}
	if _, err := os.Stat(filepath.Join(b.dir("7"), noWhiteoutsMarker)); !os.IsNotExist(err) {
		t.Errorf("stale marker left: %v", err)
	}
}
