package fuse_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/unionstack/unionstack/drivers/fuse"
	"github.com/unionstack/unionstack/drivers/fuse/fusetest"
	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/graphtest"
	"github.com/unionstack/unionstack/internal/testenv"
	"github.com/unionstack/unionstack/unionfs"
)

// With a mount server running (unionctl serve), the driver's mounts are
// served by it: no daemon per mount, the same union, copy-up into the
// snapshot's own branch, and an unmount that ends the serving. The probe
// names the server.
func TestMountThroughServer(t *testing.T) {
	testenv.NeedRoot(t)
	d, _ := graphtest.Open(t, factory)
	ctx := context.Background()
	graphtest.CommitLayer(t, d, "l0", "", graphtest.File("a", "0", 0o644))
	graphtest.CommitLayer(t, d, "l1", "l0", graphtest.File("b", "1", 0o644))
	socket := fusetest.StartMountServer(t)
	features, err := fuse.Probe(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if features["mount_server"] != socket {
		t.Errorf("probe mount_server = %q, want %s", features["mount_server"], socket)
	}

	ms, err := d.Prepare(ctx, "active", "l1")
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := graph.MountAll(ms, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = graph.UnmountAll(target) })
	if pid := unionfs.DaemonPid(target); pid != 0 {
		t.Errorf("a daemon (pid %d) serves the mount; want the server", pid)
	}
	graphtest.CheckTree(t, target, graphtest.File("a", "0", 0o644), graphtest.File("b", "1", 0o644))
	if err := os.WriteFile(filepath.Join(target, "a"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	ld := d.(graph.LayerDirer)
	dir, _, err := ld.LayerDir(ctx, "active")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a")); string(got) != "changed" {
		t.Errorf("active branch holds a = %q after the write, want the copy-up", got)
	}
	if err := graph.UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	if mounted, _ := graph.IsMountPoint(target); mounted {
		t.Error("still mounted after UnmountAll")
	}
	if err := d.Commit(ctx, "l2", "active"); err != nil {
		t.Fatal(err)
	}
	view := graphtest.ViewTree(t, d, "view", "l2")
	graphtest.CheckTree(t, view, graphtest.File("a", "changed", 0o644), graphtest.File("b", "1", 0o644))
}
