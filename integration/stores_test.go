package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

// driverNames are the drivers compared side by side, the reference first.
var driverNames = []string{"vfs", "overlay", "fuse"}

// driverStore is one driver and the image store on it, each with its own
// root below one tempRoot.
type driverStore struct {
	name  string
	dir   string // the tempRoot holding everything of this store
	d     graph.Driver
	store *graph.Store
}

// needDriver skips t (fails under UNIONSTACK_REQUIRE_ALL=1) unless driver
// name is registered and usable on this host, probed with root.
func needDriver(t testing.TB, name, root string) {
	t.Helper()
	testenv.NeedRoot(t)
	for _, a := range graph.Available(root) {
		if a.Name == name {
			testenv.Need(t, a.Usable, "driver "+name+" is not usable here: "+a.Reason)
			return
		}
	}
	t.Fatalf("driver %s is not registered (registered: %v)", name, graph.Drivers())
}

// openDriverStore opens driver name under a fresh tempRoot with a Store on
// it; both are closed when t ends.
func openDriverStore(t testing.TB, name string) *driverStore {
	t.Helper()
	dir := tempRoot(t)
	needDriver(t, name, filepath.Join(dir, "driver"))
	d, err := graph.Open(name, filepath.Join(dir, "driver"), nil)
	if err != nil {
		t.Fatalf("open driver %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close driver %s: %v", name, err)
		}
	})
	s, err := graph.OpenStore(filepath.Join(dir, "store"), d)
	if err != nil {
		t.Fatalf("open store on %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store on %s: %v", name, err)
		}
	})
	return &driverStore{name: name, dir: dir, d: d, store: s}
}

// mountDir makes an empty directory below the store's root to mount on.
func (ds *driverStore) mountDir(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(ds.dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// mountImage mounts a view of image ref at a new directory name and
// returns it; it is unmounted when t ends unless unmounted before.
func (ds *driverStore) mountImage(t testing.TB, ref, name string) string {
	t.Helper()
	mnt := ds.mountDir(t, name)
	if err := ds.store.MountImage(context.Background(), ref, mnt); err != nil {
		t.Fatalf("%s: mount image %s: %v", ds.name, ref, err)
	}
	t.Cleanup(func() { ds.unmountImage(t, mnt) })
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil || sfs.Flags&(unix.ST_NOSUID|unix.ST_NODEV) != unix.ST_NOSUID|unix.ST_NODEV {
		t.Errorf("%s: the image view's statfs flags %#x, %v: want nosuid and nodev", ds.name, sfs.Flags, err)
	}
	return mnt
}

// unmountImage unmounts a view mountImage mounted; a second call is a
// no-op.
func (ds *driverStore) unmountImage(t testing.TB, mnt string) {
	t.Helper()
	mounts, err := ds.store.ImageMounts(context.Background())
	if err != nil {
		t.Errorf("%s: list image mounts: %v", ds.name, err)
		return
	}
	for _, m := range mounts {
		if m.Dir == mnt {
			if err := ds.store.UnmountImage(context.Background(), mnt); err != nil {
				t.Errorf("%s: unmount image at %s: %v", ds.name, mnt, err)
			}
		}
	}
}

// diffIDsOf lists the DiffIDs of each image, for error messages.
func diffIDsOf(imgs []graph.Image) [][]digest.Digest {
	var out [][]digest.Digest
	for _, img := range imgs {
		out = append(out, img.DiffIDs)
	}
	return out
}
