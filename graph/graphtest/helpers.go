package graphtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/graph"
)

// mounted records the directories MountTemp mounted and that are still
// mounted, so that Unmount and t's cleanup do not unmount twice.
var (
	mountedMu sync.Mutex
	mounted   = map[string]bool{}
)

// MountTemp mounts mounts (graph.MountAll) on a new temporary directory and
// returns it; t's cleanup unmounts it (graph.UnmountAll) unless Unmount did
// already. It fails t when the mount fails.
func MountTemp(t testing.TB, mounts []graph.Mount) string {
	t.Helper()
	dir := t.TempDir()
	if err := graph.MountAll(mounts, dir); err != nil {
		t.Fatalf("mount %v on %s: %v", mounts, dir, err)
	}
	mountedMu.Lock()
	mounted[dir] = true
	mountedMu.Unlock()
	t.Cleanup(func() {
		if err := unmount(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}

// Unmount unmounts a directory that MountTemp mounted, before t ends.
func Unmount(t testing.TB, dir string) {
	t.Helper()
	if err := unmount(dir); err != nil {
		t.Fatal(err)
	}
}

// unmount unmounts dir if MountTemp mounted it and it is still mounted.
// When graph.UnmountAll fails it detaches whatever is left, so that the
// removal of the temporary directory never reaches into snapshot data.
func unmount(dir string) error {
	mountedMu.Lock()
	was := mounted[dir]
	delete(mounted, dir)
	mountedMu.Unlock()
	if !was {
		return nil
	}
	err := graph.UnmountAll(dir)
	if err != nil {
		for i := 0; i < 100 && unix.Unmount(dir, unix.MNT_DETACH) == nil; i++ {
		}
		return fmt.Errorf("unmount %s: %w (detached instead)", dir, err)
	}
	return nil
}

// MountKey mounts the active snapshot or view key of d on a new temporary
// directory (unmounted in t's cleanup) and returns it.
func MountKey(t testing.TB, d graph.Driver, key string) string {
	t.Helper()
	mounts, err := d.Mounts(context.Background(), key)
	if err != nil {
		t.Fatalf("mounts of %s: %v", key, err)
	}
	return MountTemp(t, mounts)
}

// PrepareTree prepares the active snapshot key on parent, mounts it (until
// t ends, or Unmount), writes entries into it and returns the mount point.
func PrepareTree(t testing.TB, d graph.Driver, key, parent string, entries ...Entry) string {
	t.Helper()
	mounts, err := d.Prepare(context.Background(), key, parent)
	if err != nil {
		t.Fatalf("prepare %s on %q: %v", key, parent, err)
	}
	dir := MountTemp(t, mounts)
	WriteTree(t, dir, entries...)
	return dir
}

// ViewTree creates the view key of parent, mounts it (until t ends, or
// Unmount) and returns the mount point.
func ViewTree(t testing.TB, d graph.Driver, key, parent string) string {
	t.Helper()
	mounts, err := d.View(context.Background(), key, parent)
	if err != nil {
		t.Fatalf("view %s of %q: %v", key, parent, err)
	}
	return MountTemp(t, mounts)
}

// CommitLayer creates the committed snapshot name on parent ("" for a
// base) holding parent's tree changed by entries: it prepares an active
// snapshot, mounts it, writes entries, unmounts it and commits it.
func CommitLayer(t testing.TB, d graph.Driver, name, parent string, entries ...Entry) {
	t.Helper()
	key := name + "-active"
	dir := PrepareTree(t, d, key, parent, entries...)
	Unmount(t, dir)
	if err := d.Commit(context.Background(), name, key); err != nil {
		t.Fatalf("commit %s as %s: %v", key, name, err)
	}
}

// Open calls factory for a new driver in a new temporary directory; t's
// cleanup closes it. It returns the driver and its root.
func Open(t *testing.T, factory Factory) (graph.Driver, string) {
	t.Helper()
	root := t.TempDir()
	return OpenAt(t, factory, root), root
}

// OpenAt calls factory for the driver with its data at root; t's cleanup
// closes it.
func OpenAt(t *testing.T, factory Factory, root string) graph.Driver {
	t.Helper()
	d, err := factory(t, root)
	if err != nil {
		t.Fatalf("open driver at %s: %v", root, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close driver at %s: %v", root, err)
		}
	})
	return d
}

// WantErr fails t unless err wraps sentinel and, when key is not "", its
// message names key.
func WantErr(t testing.TB, err, sentinel error, what, key string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error, want %v", what, sentinel)
	case !errors.Is(err, sentinel):
		t.Errorf("%s: error %q does not wrap %q", what, err, sentinel)
	case key != "" && !strings.Contains(err.Error(), key):
		t.Errorf("%s: error %q does not name %q", what, err, key)
	}
}

// WantErrAny is WantErr with several acceptable sentinels.
func WantErrAny(t testing.TB, err error, sentinels []error, what, key string) {
	t.Helper()
	for _, s := range sentinels {
		if errors.Is(err, s) {
			WantErr(t, err, s, what, key)
			return
		}
	}
	t.Errorf("%s: error %v wraps none of %v", what, err, sentinels)
}

// keysOf walks d and returns the infos it has, by key.
func keysOf(t testing.TB, d graph.Driver, filters ...string) map[string]graph.Info {
	t.Helper()
	got := map[string]graph.Info{}
	err := d.Walk(context.Background(), func(ctx context.Context, info graph.Info) error {
		if _, dup := got[info.Name]; dup {
			t.Errorf("walk %v: %s twice", filters, info.Name)
		}
		got[info.Name] = info
		return nil
	}, filters...)
	if err != nil {
		t.Fatalf("walk %v: %v", filters, err)
	}
	return got
}

// mustStat returns the info of key or fails t.
func mustStat(t testing.TB, d graph.Driver, key string) graph.Info {
	t.Helper()
	info, err := d.Stat(context.Background(), key)
	if err != nil {
		t.Fatalf("stat %s: %v", key, err)
	}
	return info
}

// must fails t when err is not nil.
func must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

// sameInfo says whether two infos are equal: kind, name, parent, labels
// (nil and empty alike) and both times.
func sameInfo(a, b graph.Info) bool {
	if a.Kind != b.Kind || a.Name != b.Name || a.Parent != b.Parent || len(a.Labels) != len(b.Labels) {
		return false
	}
	for k, v := range a.Labels {
		if bv, ok := b.Labels[k]; !ok || bv != v {
			return false
		}
	}
	return a.Created.Equal(b.Created) && a.Updated.Equal(b.Updated)
}
