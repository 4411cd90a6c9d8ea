package graph

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var bg = context.Background()

func TestDriverParentChainAndCommit(t *testing.T) {
	d := newMetaDriver(t, t.TempDir())

	mounts, err := d.Prepare(bg, "a", "", WithLabels(map[string]string{"role": "base"}))
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountForTest(t, mounts)
	if err := os.WriteFile(filepath.Join(mnt, "hello"), []byte("from a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UnmountAll(mnt); err != nil {
		t.Fatal(err)
	}
	info, err := d.Stat(bg, "a")
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindActive || info.Name != "a" || info.Parent != "" || info.Labels["role"] != "base" || info.Created.IsZero() {
		t.Errorf("Stat(a) = %+v", info)
	}

	if err := d.Commit(bg, "c1", "a", WithLabels(map[string]string{"layer": "1"})); err != nil {
		t.Fatal(err)
	}
	_, err = d.Stat(bg, "a")
	wantErrIs(t, "Stat of a committed active key", err, ErrNotFound)
	info, err = d.Stat(bg, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindCommitted || info.Labels["layer"] != "1" || info.Labels["role"] != "" {
		t.Errorf("Stat(c1) = %+v; want committed with only the commit's labels", info)
	}
	if len(d.b.commits) != 1 || d.b.commits[0].ID != d.b.creates[0].ID || d.b.commits[0].Kind != KindCommitted {
		t.Errorf("backend commits %+v; want the id of the create %+v, kind Committed", d.b.commits, d.b.creates[0])
	}

	// Commit kept the data: a child sees it.
	mounts, err = d.Prepare(bg, "b", "c1")
	if err != nil {
		t.Fatal(err)
	}
	mnt = mountForTest(t, mounts)
	if got, err := os.ReadFile(filepath.Join(mnt, "hello")); err != nil || string(got) != "from a" {
		t.Errorf("child of c1 reads %q, %v; want the committed data", got, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "second"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UnmountAll(mnt); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(bg, "c2", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.View(bg, "v", "c2"); err != nil {
		t.Fatal(err)
	}
	// The backend gets the parent ids nearest first.
	idOf := map[string]string{}
	for i, key := range []string{"c1", "c2", "v"} {
		idOf[key] = d.b.creates[[]int{0, 1, 2}[i]].ID
	}
	last := d.b.creates[len(d.b.creates)-1]
	if want := []string{idOf["c2"], idOf["c1"]}; !slices.Equal(last.ParentIDs, want) || last.Kind != KindView {
		t.Errorf("view created with %+v; want kind View, parents %v", last, want)
	}
	// A view is read-only.
	mounts, err = d.Mounts(bg, "v")
	if err != nil {
		t.Fatal(err)
	}
	mnt = mountForTest(t, mounts)
	if _, err := os.ReadFile(filepath.Join(mnt, "second")); err != nil {
		t.Errorf("view of c2 lacks a file of c2: %v", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "x"), nil, 0o644); err == nil {
		t.Errorf("writing into a view succeeded")
	}
}

func TestDriverErrors(t *testing.T) {
	d := newMetaDriver(t, t.TempDir())
	mustMetaPrepare(t, d, "active", "")
	mustMetaPrepare(t, d, "base-tmp", "")
	if err := d.Commit(bg, "base", "base-tmp"); err != nil {
		t.Fatal(err)
	}
	mustMetaPrepare(t, d, "child", "base")
	if _, err := d.View(bg, "view", "base"); err != nil {
		t.Fatal(err)
	}

	long := strings.Repeat("k", maxKeyLen+1)
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"prepare empty key", metaPrep(d, "", ""), ErrInvalidArgument},
		{"view empty key", metaView(d, "", ""), ErrInvalidArgument},
		{"prepare key with NUL", metaPrep(d, "a\x00b", ""), ErrInvalidArgument},
		{"prepare key too long", metaPrep(d, long, ""), ErrInvalidArgument},
		{"prepare parent with NUL", metaPrep(d, "p", "x\x00"), ErrInvalidArgument},
		{"prepare on missing parent", metaPrep(d, "p", "missing"), ErrNotFound},
		{"view on missing parent", metaView(d, "p", "missing"), ErrNotFound},
		{"prepare on active parent", metaPrep(d, "p", "active"), ErrFailedPrecondition},
		{"prepare on view parent", metaPrep(d, "p", "view"), ErrFailedPrecondition},
		{"prepare duplicate active", metaPrep(d, "active", ""), ErrAlreadyExists},
		{"prepare duplicate committed", metaPrep(d, "base", ""), ErrAlreadyExists},
		{"view duplicate", metaView(d, "view", "base"), ErrAlreadyExists},
		{"prepare label without name", metaPrepLabels(d, "p", map[string]string{"": "x"}), ErrInvalidArgument},
		{"prepare label too long", metaPrepLabels(d, "p", map[string]string{"k": strings.Repeat("v", maxLabelLen)}), ErrInvalidArgument},
		{"commit empty name", d.Commit(bg, "", "active"), ErrInvalidArgument},
		{"commit missing key", d.Commit(bg, "n", "missing"), ErrNotFound},
		{"commit a view", d.Commit(bg, "n", "view"), ErrFailedPrecondition},
		{"commit a committed", d.Commit(bg, "n", "base"), ErrFailedPrecondition},
		{"commit to a taken name", d.Commit(bg, "child", "active"), ErrAlreadyExists},
		{"commit to itself", d.Commit(bg, "active", "active"), ErrAlreadyExists},
		{"mounts of committed", errOnly(d.Mounts(bg, "base")), ErrFailedPrecondition},
		{"mounts of missing", errOnly(d.Mounts(bg, "missing")), ErrNotFound},
		{"mounts empty key", errOnly(d.Mounts(bg, "")), ErrInvalidArgument},
		{"remove with children", d.Remove(bg, "base"), ErrFailedPrecondition},
		{"remove missing", d.Remove(bg, "missing"), ErrNotFound},
		{"remove empty key", d.Remove(bg, ""), ErrInvalidArgument},
		{"stat missing", errOnly(d.Stat(bg, "missing")), ErrNotFound},
		{"usage missing", errOnly(d.Usage(bg, "missing")), ErrNotFound},
		{"update missing", errOnly(d.Update(bg, Info{Name: "missing"})), ErrNotFound},
		{"update empty name", errOnly(d.Update(bg, Info{})), ErrInvalidArgument},
		{"update kind", errOnly(d.Update(bg, Info{Name: "active", Kind: KindView}, "kind")), ErrInvalidArgument},
		{"update parent", errOnly(d.Update(bg, Info{Name: "child", Parent: ""}, "parent")), ErrInvalidArgument},
		{"update name", errOnly(d.Update(bg, Info{Name: "active"}, "name")), ErrInvalidArgument},
		{"update labels. without key", errOnly(d.Update(bg, Info{Name: "active"}, "labels.")), ErrInvalidArgument},
		{"walk unknown field", d.Walk(bg, walkNoop, "color==red"), ErrInvalidArgument},
		{"walk bad kind", d.Walk(bg, walkNoop, "kind==Bogus"), ErrInvalidArgument},
		{"walk empty filter", d.Walk(bg, walkNoop, ""), ErrInvalidArgument},
		{"walk kind without value", d.Walk(bg, walkNoop, "kind"), ErrInvalidArgument},
		{"walk bad quoting", d.Walk(bg, walkNoop, `name=="unterminated`), ErrInvalidArgument},
	}
	for _, c := range cases {
		wantErrIs(t, c.name, c.err, c.want)
	}

	// Errors name the operation and the key.
	err := d.Remove(bg, "base")
	if msg := err.Error(); !strings.Contains(msg, "remove") || !strings.Contains(msg, `"base"`) || !strings.Contains(msg, `"child"`) {
		t.Errorf("error %q should name the operation, the key and the child", msg)
	}
	err = metaPrep(d, "p", "missing")
	if msg := err.Error(); !strings.Contains(msg, `"p"`) || !strings.Contains(msg, `"missing"`) {
		t.Errorf("error %q should name the key and the missing parent", msg)
	}

	// Nothing half-made is left behind by the failures.
	var keys []string
	if err := d.Walk(bg, func(_ context.Context, i Info) error { keys = append(keys, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"active", "base", "child", "view"}; !slices.Equal(keys, want) {
		t.Errorf("snapshots after the failures: %v, want %v", keys, want)
	}
	if got := d.b.dataIDs(t); len(got) != 4 {
		t.Errorf("backend has data of %v, want 4 snapshots", got)
	}

	// After Close, every call fails cleanly.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	wantErrIs(t, "stat after close", errOnly(d.Stat(bg, "active")), ErrFailedPrecondition)
	wantErrIs(t, "prepare after close", metaPrep(d, "q", ""), ErrFailedPrecondition)
	if !d.b.closed {
		t.Errorf("Close did not close the backend")
	}
}

func TestDriverRemove(t *testing.T) {
	d := newMetaDriver(t, t.TempDir())
	mustMetaPrepare(t, d, "tmp", "")
	if err := d.Commit(bg, "base", "tmp"); err != nil {
		t.Fatal(err)
	}
	mustMetaPrepare(t, d, "c1", "base")
	if _, err := d.View(bg, "c2", "base"); err != nil {
		t.Fatal(err)
	}
	wantErrIs(t, "remove base with 2 children", d.Remove(bg, "base"), ErrFailedPrecondition)
	for _, k := range []string{"c1", "c2"} {
		if err := d.Remove(bg, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Remove(bg, "base"); err != nil {
		t.Fatalf("remove base without children: %v", err)
	}
	if ids := d.b.dataIDs(t); len(ids) != 0 {
		t.Errorf("data left after removing everything: %v", ids)
	}
	// A removed key can be used again, with a new id.
	mustMetaPrepare(t, d, "base", "")
	ids := map[string]bool{}
	for _, s := range d.b.creates {
		if ids[s.ID] {
			t.Errorf("id %s used twice", s.ID)
		}
		ids[s.ID] = true
	}
}

func TestDriverUpdateLabels(t *testing.T) {
	d := newMetaDriver(t, t.TempDir())
	mustMetaPrepareLabels(t, d, "a", map[string]string{"a": "1", "b": "2"})
	before, _ := d.Stat(bg, "a")

	steps := []struct {
		labels map[string]string
		paths  []string
		want   map[string]string
	}{
		{map[string]string{"c": "3"}, nil, map[string]string{"c": "3"}},
		{map[string]string{"d": "4", "e": "ignored"}, []string{"labels.d"}, map[string]string{"c": "3", "d": "4"}},
		{nil, []string{"labels.c"}, map[string]string{"d": "4"}},
		{map[string]string{"x": "y", "z": "w"}, []string{"labels"}, map[string]string{"x": "y", "z": "w"}},
		{map[string]string{"z": "new"}, []string{"labels.z", "labels.x"}, map[string]string{"z": "new"}},
	}
	for i, s := range steps {
		// Kind and Parent in info are ignored: they cannot change.
		got, err := d.Update(bg, Info{Name: "a", Kind: KindCommitted, Parent: "other", Labels: s.labels}, s.paths...)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		st, err := d.Stat(bg, "a")
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got.Labels, s.want) || !maps.Equal(st.Labels, s.want) {
			t.Errorf("step %d: Update returned %v, Stat says %v, want %v", i, got.Labels, st.Labels, s.want)
		}
		if st.Kind != KindActive || st.Parent != "" || st.Name != "a" {
			t.Errorf("step %d: Update changed kind/parent/name: %+v", i, st)
		}
		if !st.Created.Equal(before.Created) || st.Updated.Before(before.Updated) {
			t.Errorf("step %d: created %v -> %v, updated %v -> %v", i, before.Created, st.Created, before.Updated, st.Updated)
		}
	}
}

func TestDriverWalkFilters(t *testing.T) {
	d := newMetaDriver(t, t.TempDir())
	mustMetaPrepareLabels(t, d, "t1", map[string]string{"tier": "gold"})
	if err := d.Commit(bg, "base", "t1", WithLabels(map[string]string{"tier": "gold", "layer": "yes"})); err != nil {
		t.Fatal(err)
	}
	mustMetaPrepareLabels(t, d, "app", map[string]string{"tier": "silver"})
	if _, err := d.Prepare(bg, "on-base", "base", WithLabels(map[string]string{"tier": "gold"})); err != nil {
		t.Fatal(err)
	}
	if _, err := d.View(bg, "look", "base", WithLabels(map[string]string{"odd key": `a "quoted" value`})); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"app", "base", "look", "on-base"}},
		{[]string{"kind==Active"}, []string{"app", "on-base"}},
		{[]string{"kind==committed"}, []string{"base"}},
		{[]string{"kind==View"}, []string{"look"}},
		{[]string{"kind!=Active"}, []string{"base", "look"}},
		{[]string{"parent==base"}, []string{"look", "on-base"}},
		{[]string{"parent=="}, []string{"app", "base"}},
		{[]string{"name==app"}, []string{"app"}},
		{[]string{"labels.tier==gold"}, []string{"base", "on-base"}},
		{[]string{"labels.layer"}, []string{"base"}},
		{[]string{"labels.tier!=gold"}, []string{"app", "look"}},
		{[]string{"labels.tier==gold", "kind==Active"}, []string{"on-base"}},
		{[]string{"labels.tier==gold", "parent==base", "name==on-base"}, []string{"on-base"}},
		{[]string{"labels.tier==gold", "kind==View"}, nil},
		{[]string{`labels.odd key=="a \"quoted\" value"`}, []string{"look"}},
		{[]string{"labels.missing"}, nil},
	}
	for _, c := range cases {
		var got []string
		err := d.Walk(bg, func(_ context.Context, i Info) error { got = append(got, i.Name); return nil }, c.filters...)
		if err != nil {
			t.Errorf("Walk %q: %v", c.filters, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Walk %q = %v, want %v", c.filters, got, c.want)
		}
	}

	// fn may call the driver, and its error stops the walk.
	stop := errors.New("stop")
	n := 0
	err := d.Walk(bg, func(ctx context.Context, i Info) error {
		n++
		if _, err := d.Update(bg, Info{Name: i.Name, Labels: map[string]string{"seen": "1"}}, "labels.seen"); err != nil {
			return err
		}
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Walk returned %v after %d calls; want the callback's error after 1", err, n)
	}
}

func TestDriverUsage(t *testing.T) {
	d := newMetaDriver(t, t.TempDir())
	mounts := mustMetaPrepare(t, d, "a", "")
	mnt := mountForTest(t, mounts)
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprint(i)), make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u, err := d.Usage(bg, "a")
	if err != nil {
		t.Fatal(err)
	}
	if u.Size != 3000 || u.Inodes != 4 {
		t.Errorf("usage of active = %+v, want 3000 bytes in 4 inodes", u)
	}
	if err := UnmountAll(mnt); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(bg, "c", "a"); err != nil {
		t.Fatal(err)
	}
	// The usage of a committed snapshot is the one measured at commit.
	id := d.b.creates[0].ID
	if err := os.WriteFile(filepath.Join(d.b.dir(id), "fs", "late"), make([]byte, 500), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err = d.Usage(bg, "c")
	if err != nil {
		t.Fatal(err)
	}
	if u.Size != 3000 || u.Inodes != 4 {
		t.Errorf("usage of committed = %+v, want the 3000 bytes in 4 inodes cached at commit", u)
	}
}

func TestDriverCreateFailureIsUndone(t *testing.T) {
	d := newMetaDriver(t, t.TempDir())
	boom := errors.New("disk on fire")
	d.b.hook = func(op, id string) error {
		if op == "create-done" {
			return boom
		}
		return nil
	}
	_, err := d.Prepare(bg, "a", "")
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("Prepare with a failing backend: %v; want the backend error, naming the key", err)
	}
	wantErrIs(t, "stat after failed prepare", errOnly(d.Stat(bg, "a")), ErrNotFound)
	if ids := d.b.dataIDs(t); len(ids) != 0 {
		t.Errorf("data of a failed create left behind: %v", ids)
	}
	d.b.hook = nil
	mustMetaPrepare(t, d, "a", "")
	if first, second := d.b.creates[0].ID, d.b.creates[1].ID; first == second {
		t.Errorf("id %s reused after a failed create", first)
	}

	// A failing backend commit leaves the active snapshot as it was.
	d.b.hook = func(op, id string) error {
		if op == "commit" {
			return boom
		}
		return nil
	}
	if err := d.Commit(bg, "c", "a"); !errors.Is(err, boom) {
		t.Fatalf("Commit with a failing backend: %v", err)
	}
	d.b.hook = nil
	if info, err := d.Stat(bg, "a"); err != nil || info.Kind != KindActive {
		t.Errorf("after a failed commit: %+v, %v; want a still active", info, err)
	}
	wantErrIs(t, "stat of the name of a failed commit", errOnly(d.Stat(bg, "c")), ErrNotFound)
	if err := d.Commit(bg, "c", "a"); err != nil {
		t.Errorf("commit retried: %v", err)
	}

	// A failing backend remove leaves the snapshot visible, to retry.
	d.b.hook = func(op, id string) error {
		if op == "remove" {
			return boom
		}
		return nil
	}
	if err := d.Remove(bg, "c"); !errors.Is(err, boom) {
		t.Fatalf("Remove with a failing backend: %v", err)
	}
	d.b.hook = nil
	if _, err := d.Stat(bg, "c"); err != nil {
		t.Errorf("after a failed remove: %v", err)
	}
	if err := d.Remove(bg, "c"); err != nil {
		t.Errorf("remove retried: %v", err)
	}
}

func TestDriverCreatingIsInvisible(t *testing.T) {
	d := newMetaDriver(t, t.TempDir())
	var seen []string
	d.b.hook = func(op, id string) error {
		if op != "create" {
			return nil
		}
		// Called while "half" is being created.
		if _, err := d.Stat(bg, "half"); !errors.Is(err, ErrNotFound) {
			seen = append(seen, fmt.Sprintf("Stat: %v", err))
		}
		if _, err := d.Mounts(bg, "half"); !errors.Is(err, ErrNotFound) {
			seen = append(seen, fmt.Sprintf("Mounts: %v", err))
		}
		_ = d.Walk(bg, func(_ context.Context, i Info) error { seen = append(seen, "Walk: "+i.Name); return nil })
		return nil
	}
	mustMetaPrepare(t, d, "half", "")
	if len(seen) > 0 {
		t.Errorf("a snapshot being created was visible: %v", seen)
	}
}

func TestDriverLayerDir(t *testing.T) {
	root := t.TempDir()
	plain := newMetaDriver(t, filepath.Join(root, "plain"))
	if _, ok := plain.Driver.(LayerDirer); ok {
		t.Errorf("driver on a backend without LayerDir is a LayerDirer")
	}

	b := newDirBackend(t, filepath.Join(root, "ld", "data"))
	d, err := NewDriver(filepath.Join(root, "ld"), dirLayerBackend{b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	ld, ok := d.(LayerDirer)
	if !ok {
		t.Fatalf("driver on a BackendLayerDirer is not a LayerDirer")
	}
	if _, err := d.Prepare(bg, "a", ""); err != nil {
		t.Fatal(err)
	}
	dir, _, err := ld.LayerDir(bg, "a")
	if err != nil || dir != filepath.Join(b.dir(b.creates[0].ID), "fs") {
		t.Errorf("LayerDir(a) = %q, %v", dir, err)
	}
	if err := d.Commit(bg, "c", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.View(bg, "v", "c"); err != nil {
		t.Fatal(err)
	}
	_, _, err = ld.LayerDir(bg, "c")
	wantErrIs(t, "LayerDir of committed", err, ErrFailedPrecondition)
	_, _, err = ld.LayerDir(bg, "v")
	wantErrIs(t, "LayerDir of view", err, ErrFailedPrecondition)
	_, _, err = ld.LayerDir(bg, "missing")
	wantErrIs(t, "LayerDir of missing", err, ErrNotFound)
}

func TestDriverConcurrent(t *testing.T) {
	d := newMetaDriver(t, t.TempDir())
	mustMetaPrepare(t, d, "tmp", "")
	if err := d.Commit(bg, "base", "tmp"); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	dupWins, errs := 0, []error{}
	fail := func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
	for i := range n {
		wg.Go(func() {
			key := "k" + strconv.Itoa(i)
			if _, err := d.Prepare(bg, key, "base"); err != nil {
				fail(err)
				return
			}
			// Everyone races for one key; exactly one wins.
			_, err := d.Prepare(bg, "dup", "base")
			switch {
			case err == nil:
				mu.Lock()
				dupWins++
				mu.Unlock()
			case !errors.Is(err, ErrAlreadyExists):
				fail(err)
			}
			if _, err := d.Mounts(bg, key); err != nil {
				fail(err)
			}
			// Removing the parent fails while children exist.
			if err := d.Remove(bg, "base"); !errors.Is(err, ErrFailedPrecondition) {
				fail(fmt.Errorf("remove base with children: %v", err))
			}
			if i%2 == 0 {
				if err := d.Remove(bg, key); err != nil {
					fail(err)
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if dupWins != 1 {
		t.Errorf("%d goroutines created the same key", dupWins)
	}
	var keys []string
	if err := d.Walk(bg, func(_ context.Context, i Info) error { keys = append(keys, i.Name); return nil }, "parent==base"); err != nil {
		t.Fatal(err)
	}
	if len(keys) != n/2+1 {
		t.Errorf("children of base after the race: %d (%v), want %d", len(keys), keys, n/2+1)
	}
	if ids := d.b.dataIDs(t); len(ids) != n/2+2 {
		t.Errorf("backend holds %d snapshots, metadata %d", len(ids), n/2+2)
	}
}

func TestDriverReopen(t *testing.T) {
	root := t.TempDir()
	d := newMetaDriver(t, root)
	mustMetaPrepareLabels(t, d, "a", map[string]string{"k": "v"})
	if err := d.Commit(bg, "c", "a"); err != nil {
		t.Fatal(err)
	}
	mustMetaPrepare(t, d, "child", "c")
	before, _ := d.Stat(bg, "child")
	lastID := d.b.creates[len(d.b.creates)-1].ID
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d2 := newMetaDriver(t, root)
	after, err := d2.Stat(bg, "child")
	if err != nil {
		t.Fatal(err)
	}
	if after.Parent != "c" || after.Kind != KindActive || !after.Created.Equal(before.Created) {
		t.Errorf("after reopen: %+v, before: %+v", after, before)
	}
	if _, err := d2.Mounts(bg, "child"); err != nil {
		t.Error(err)
	}
	wantErrIs(t, "remove parent after reopen", d2.Remove(bg, "c"), ErrFailedPrecondition)
	mustMetaPrepare(t, d2, "new", "")
	newID, _ := strconv.ParseUint(d2.b.creates[0].ID, 10, 64)
	if old, _ := strconv.ParseUint(lastID, 10, 64); newID <= old {
		t.Errorf("id %d after reopen is not above the last one %s", newID, lastID)
	}
	if len(d2.b.cleanedUp) != 0 {
		t.Errorf("reopen cleaned up live data: %v", d2.b.cleanedUp)
	}
}

func TestDriverSecondOpenFails(t *testing.T) {
	root := t.TempDir()
	newMetaDriver(t, root)
	b := newDirBackend(t, filepath.Join(root, "data"))
	d, err := NewDriver(root, b)
	if err == nil {
		d.Close()
		t.Fatal("a second NewDriver on an open store succeeded")
	}
	wantErrIs(t, "second open", err, ErrFailedPrecondition)
	if !strings.Contains(err.Error(), "locked") {
		t.Errorf("error %q does not say the store is locked", err)
	}
	if !b.closed {
		t.Errorf("the failed NewDriver did not close its backend")
	}
}

func mustMetaPrepare(t *testing.T, d Driver, key, parent string) []Mount {
	t.Helper()
	m, err := d.Prepare(bg, key, parent)
	if err != nil {
		t.Fatalf("Prepare(%q, %q): %v", key, parent, err)
	}
	return m
}

func mustMetaPrepareLabels(t *testing.T, d Driver, key string, labels map[string]string) {
	t.Helper()
	if _, err := d.Prepare(bg, key, "", WithLabels(labels)); err != nil {
		t.Fatalf("Prepare(%q): %v", key, err)
	}
}

func metaPrep(d Driver, key, parent string) error {
	_, err := d.Prepare(bg, key, parent)
	return err
}

func metaView(d Driver, key, parent string) error {
	_, err := d.View(bg, key, parent)
	return err
}

func metaPrepLabels(d Driver, key string, labels map[string]string) error {
	_, err := d.Prepare(bg, key, "", WithLabels(labels))
	return err
}

func errOnly[T any](_ T, err error) error { return err }

func walkNoop(context.Context, Info) error { return nil }
