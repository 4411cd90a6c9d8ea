package graphtest

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/unionstack/unionstack/graph"
)

// baseTree is a small tree most cases start from.
func baseTree() []Entry {
	return []Entry{
		File("etc/hostname", "base\n", 0o644),
		File("bin/tool", "#!/bin/sh\necho hi\n", 0o755),
		Dir("var/empty", 0o700),
		Symlink("etc/alias", "hostname"),
	}
}

// testLifecycle: prepare, mounts, commit, view, prepare on committed,
// remove, and the kinds, parents and labels they leave.
func testLifecycle(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()

	mounts, err := d.Prepare(ctx, "base-active", "", graph.WithLabels(map[string]string{"stage": "build"}))
	must(t, err, "prepare base-active")
	if len(mounts) == 0 {
		t.Fatal("prepare base-active returned no mounts")
	}
	again, err := d.Mounts(ctx, "base-active")
	must(t, err, "mounts of base-active")
	if !reflect.DeepEqual(mounts, again) {
		t.Errorf("mounts of base-active: %v, prepare returned %v", again, mounts)
	}
	info := mustStat(t, d, "base-active")
	if info.Kind != graph.KindActive || info.Name != "base-active" || info.Parent != "" || info.Labels["stage"] != "build" {
		t.Errorf("stat base-active: %+v", info)
	}
	if info.Created.IsZero() || info.Updated.Before(info.Created) {
		t.Errorf("stat base-active: created %v, updated %v", info.Created, info.Updated)
	}

	dir := MountTemp(t, mounts)
	CheckNames(t, dir) // a new base snapshot is empty
	WriteTree(t, dir, baseTree()...)
	Unmount(t, dir)

	must(t, d.Commit(ctx, "base", "base-active", graph.WithLabels(map[string]string{"layer": "1"})), "commit base")
	if _, err := d.Stat(ctx, "base-active"); err == nil {
		t.Error("stat base-active after commit: still exists")
	} else {
		WantErr(t, err, graph.ErrNotFound, "stat base-active after commit", "base-active")
	}
	info = mustStat(t, d, "base")
	if info.Kind != graph.KindCommitted || info.Parent != "" || info.Labels["layer"] != "1" {
		t.Errorf("stat base: %+v", info)
	}

	// A view sees the committed tree and cannot change it.
	view := ViewTree(t, d, "view", "base")
	info = mustStat(t, d, "view")
	if info.Kind != graph.KindView || info.Parent != "base" {
		t.Errorf("stat view: %+v", info)
	}
	CheckTree(t, view, baseTree()...)
	if err := os.WriteFile(filepath.Join(view, "new"), []byte("x"), 0o644); err == nil {
		t.Error("writing a new file into a view succeeded")
	}
	if err := os.WriteFile(filepath.Join(view, "etc/hostname"), []byte("x"), 0o644); err == nil {
		t.Error("overwriting a file in a view succeeded")
	}
	if err := os.Remove(filepath.Join(view, "bin/tool")); err == nil {
		t.Error("removing a file from a view succeeded")
	}

	// An active snapshot on a committed one starts with its tree.
	child := PrepareTree(t, d, "child", "base", File("etc/hostname", "child\n", 0o644), File("new", "n", 0o600))
	info = mustStat(t, d, "child")
	if info.Kind != graph.KindActive || info.Parent != "base" {
		t.Errorf("stat child: %+v", info)
	}
	want := append(baseTree()[1:], File("etc/hostname", "child\n", 0o644), File("new", "n", 0o600))
	CheckTree(t, child, want...)
	CheckTree(t, view, baseTree()...) // the child's changes do not reach the parent
	Unmount(t, child)
	must(t, d.Commit(ctx, "layer2", "child"), "commit child")
	top := ViewTree(t, d, "top", "layer2")
	CheckTree(t, top, want...)
	CheckNames(t, top, "bin", "etc", "new", "var")

	// Parents cannot go while they have children.
	WantErr(t, d.Remove(ctx, "base"), graph.ErrFailedPrecondition, "remove base with children", "base")
	WantErr(t, d.Remove(ctx, "layer2"), graph.ErrFailedPrecondition, "remove layer2 with a view", "layer2")
	CheckTree(t, view, baseTree()...)

	Unmount(t, top)
	Unmount(t, view)
	for _, key := range []string{"top", "layer2", "view", "base"} {
		must(t, d.Remove(ctx, key), "remove %s", key)
		_, err := d.Stat(ctx, key)
		WantErr(t, err, graph.ErrNotFound, "stat after remove", key)
	}
	if left := keysOf(t, d); len(left) != 0 {
		t.Errorf("walk after removing everything: %v", left)
	}

	// A removed key can be used again, and starts afresh.
	again2 := PrepareTree(t, d, "base", "")
	CheckNames(t, again2)
}
