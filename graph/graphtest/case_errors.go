package graphtest

import (
	"context"
	"testing"

	"github.com/unionstack/unionstack/graph"
)

// testErrors: every failing call wraps the right sentinel, names its key,
// and changes nothing.
func testErrors(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	CommitLayer(t, d, "base", "", baseTree()...)
	_, err := d.Prepare(ctx, "active", "base")
	must(t, err, "prepare active")
	_, err = d.View(ctx, "view", "base")
	must(t, err, "view view")

	_, err = d.Prepare(ctx, "", "base")
	WantErr(t, err, graph.ErrInvalidArgument, "prepare with an empty key", "")
	_, err = d.View(ctx, "", "base")
	WantErr(t, err, graph.ErrInvalidArgument, "view with an empty key", "")
	_, err = d.Prepare(ctx, "orphan", "missing")
	WantErr(t, err, graph.ErrNotFound, "prepare on a missing parent", "missing")
	_, err = d.View(ctx, "orphan-view", "missing")
	WantErr(t, err, graph.ErrNotFound, "view of a missing parent", "missing")
	_, err = d.Prepare(ctx, "active", "base")
	WantErr(t, err, graph.ErrAlreadyExists, "prepare an existing active key", "active")
	_, err = d.Prepare(ctx, "base", "")
	WantErr(t, err, graph.ErrAlreadyExists, "prepare the key of a committed snapshot", "base")
	_, err = d.View(ctx, "view", "base")
	WantErr(t, err, graph.ErrAlreadyExists, "view an existing key", "view")
	_, err = d.Prepare(ctx, "on-active", "active")
	WantErr(t, err, graph.ErrFailedPrecondition, "prepare on an active parent", "active")
	_, err = d.Prepare(ctx, "on-view", "view")
	WantErr(t, err, graph.ErrFailedPrecondition, "prepare on a view", "view")
	_, err = d.View(ctx, "view-of-active", "active")
	WantErr(t, err, graph.ErrFailedPrecondition, "view of an active parent", "active")

	WantErr(t, d.Commit(ctx, "x", "missing"), graph.ErrNotFound, "commit a missing key", "missing")
	WantErr(t, d.Commit(ctx, "x", "base"), graph.ErrFailedPrecondition, "commit a committed snapshot", "base")
	WantErr(t, d.Commit(ctx, "x", "view"), graph.ErrFailedPrecondition, "commit a view", "view")
	WantErr(t, d.Commit(ctx, "base", "active"), graph.ErrAlreadyExists, "commit onto an existing name", "base")
	WantErr(t, d.Commit(ctx, "view", "active"), graph.ErrAlreadyExists, "commit onto the key of a view", "view")
	WantErr(t, d.Commit(ctx, "", "active"), graph.ErrInvalidArgument, "commit to an empty name", "")

	_, err = d.Mounts(ctx, "missing")
	WantErr(t, err, graph.ErrNotFound, "mounts of a missing key", "missing")
	_, err = d.Mounts(ctx, "base")
	WantErr(t, err, graph.ErrFailedPrecondition, "mounts of a committed snapshot", "base")

	WantErr(t, d.Remove(ctx, "missing"), graph.ErrNotFound, "remove a missing key", "missing")
	WantErr(t, d.Remove(ctx, "base"), graph.ErrFailedPrecondition, "remove a parent", "base")

	_, err = d.Stat(ctx, "missing")
	WantErr(t, err, graph.ErrNotFound, "stat a missing key", "missing")
	_, err = d.Usage(ctx, "missing")
	WantErr(t, err, graph.ErrNotFound, "usage of a missing key", "missing")
	_, err = d.Update(ctx, graph.Info{Name: "missing", Labels: map[string]string{"a": "b"}})
	WantErr(t, err, graph.ErrNotFound, "update a missing key", "missing")
	_, err = d.Update(ctx, graph.Info{Name: "active", Kind: graph.KindCommitted}, "kind")
	WantErr(t, err, graph.ErrInvalidArgument, "update the kind", "kind")
	_, err = d.Update(ctx, graph.Info{Name: "active", Parent: "view"}, "parent")
	WantErr(t, err, graph.ErrInvalidArgument, "update the parent", "parent")

	walk := func(ctx context.Context, info graph.Info) error { return nil }
	WantErr(t, d.Walk(ctx, walk, "bogus"), graph.ErrInvalidArgument, "walk with a filter without ==", "bogus")
	WantErr(t, d.Walk(ctx, walk, "kind==Sideways"), graph.ErrInvalidArgument, "walk with an unknown kind", "Sideways")
	WantErr(t, d.Walk(ctx, walk, "colour==red"), graph.ErrInvalidArgument, "walk with an unknown field", "colour")

	// Nothing of the failed calls is left behind, and the good ones are intact.
	got := keysOf(t, d)
	want := map[string]graph.Kind{"base": graph.KindCommitted, "active": graph.KindActive, "view": graph.KindView}
	if len(got) != len(want) {
		t.Errorf("walk after failed calls: %v, want %v", got, want)
	}
	for key, kind := range want {
		if got[key].Kind != kind {
			t.Errorf("after failed calls: %s is %v, want %v", key, got[key].Kind, kind)
		}
	}
	CheckTree(t, MountKey(t, d, "active"), baseTree()...)
	CheckTree(t, MountKey(t, d, "view"), baseTree()...)
}
