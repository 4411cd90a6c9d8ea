package graphtest

import (
	"context"
	"testing"

	"github.com/unionstack/unionstack/graph"
)

// testReopen: a store closed and opened again has every snapshot with the
// same metadata and data, and goes on working; new snapshots do not
// collide with old data.
func testReopen(t *testing.T, s *suite) {
	root := t.TempDir()
	ctx := context.Background()
	d, err := s.factory(t, root)
	must(t, err, "open driver at %s", root)
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Close()
		}
	})
	CommitLayer(t, d, "base", "", baseTree()...)
	CommitLayer(t, d, "l2", "base", File("l2-file", "2", 0o644))
	_, err = d.Update(ctx, graph.Info{Name: "l2", Labels: map[string]string{"k": "v"}})
	must(t, err, "label l2")
	work := PrepareTree(t, d, "work", "l2", File("work-file", "w", 0o600), Absent("etc/hostname"))
	Unmount(t, work)
	_, err = d.View(ctx, "look", "l2", graph.WithLabels(map[string]string{"who": "me"}))
	must(t, err, "view look")
	before := keysOf(t, d)
	must(t, d.Close(), "close")
	closed = true

	d = OpenAt(t, s.factory, root)
	after := keysOf(t, d)
	if len(after) != len(before) {
		t.Errorf("after reopen: %d snapshots, before %d", len(after), len(before))
	}
	for key, info := range before {
		if !sameInfo(after[key], info) {
			t.Errorf("after reopen, %s: %+v, before %+v", key, after[key], info)
		}
	}
	workTree := []Entry{File("work-file", "w", 0o600), Absent("etc/hostname"), File("l2-file", "2", 0o644), File("bin/tool", "#!/bin/sh\necho hi\n", 0o755)}
	workDir := MountKey(t, d, "work")
	CheckTree(t, workDir, workTree...)
	CheckTree(t, MountKey(t, d, "look"), File("l2-file", "2", 0o644), File("etc/hostname", "base\n", 0o644))

	// It goes on working: new snapshots (with fresh ids) start clean.
	fresh := PrepareTree(t, d, "fresh", "")
	CheckNames(t, fresh)
	Unmount(t, workDir)
	must(t, d.Commit(ctx, "l3", "work"), "commit work after reopen")
	CheckTree(t, ViewTree(t, d, "l3-view", "l3"), workTree...)
	must(t, d.Remove(ctx, "look"), "remove look after reopen")
}
