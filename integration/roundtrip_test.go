package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/graph"
)

// changedTime is the mtime every path the round trip changes is given,
// so that the committed trees can be compared time for time.
var changedTime = time.Date(2026, 1, 2, 3, 4, 5, 600700800, time.UTC)

// containerChanges makes the same changes in a container's mounted rootfs
// on every driver: a lower file modified, one deleted, a lower directory
// renamed (with hard links, a setgid bit and xattrs inside), a fifo
// created, an xattr set and an owner changed on lower files, a new
// directory tree. Every path changed, and each parent whose entries
// changed, then gets changedTime.
func containerChanges(t testing.TB, root string) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(root, rel) }
	f, err := os.OpenFile(p("etc/passwd"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("modify a lower file: %v", err)
	}
	if _, err := f.WriteString("guest:x:2000:2000::/tmp:/bin/sh\n"); err != nil {
		t.Fatalf("modify a lower file: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("etc/hostname")); err != nil {
		t.Fatalf("delete a lower file: %v", err)
	}
	if err := os.Rename(p("srv/www"), p("srv/site")); err != nil {
		t.Fatalf("rename a lower directory: %v", err)
	}
	if err := unix.Mkfifo(p("run/newfifo"), 0o640); err != nil {
		t.Fatalf("create a fifo: %v", err)
	}
	if err := os.Chmod(p("run/newfifo"), 0o640); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(p("etc/group.moved"), "user.changed", []byte("in the container"), 0); err != nil {
		t.Fatalf("set an xattr on a lower file: %v", err)
	}
	if err := os.Lchown(p("opt/data/new"), 1000, 1000); err != nil {
		t.Fatalf("chown a lower file: %v", err)
	}
	if err := os.MkdirAll(p("new/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("new/dir/file"), []byte("created in the container\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(changedTime.UnixNano()), unix.NsecToTimespec(changedTime.UnixNano())}
	for _, rel := range []string{"etc/passwd", "etc/group.moved", "etc", "srv", "run/newfifo", "run", "opt/data/new",
		"new/dir/file", "new/dir", "new"} {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p(rel), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatalf("set the time of %s: %v", rel, err)
		}
	}
}

// roundTrip is what one driver's container round trip produced.
type roundTrip struct {
	diffID   digest.Digest // DiffID of the committed layer
	manifest manifest      // tree of an image of the committed layer
}

// TestContainerRoundTrip makes the same changes in a container on vfs,
// overlay and fuse, commits each, and mounts an image of the committed
// layer: the trees must be equal. The DiffIDs may differ (native diffs
// write an opaque directory or a moved directory otherwise than a tree
// comparison does); whether they match is logged.
func TestContainerRoundTrip(t *testing.T) {
	layout, _ := sameTreeImage(t)
	ctx := context.Background()
	results := map[string]roundTrip{}
	for _, name := range driverNames {
		t.Run(name, func(t *testing.T) {
			ds := openDriverStore(t, name)
			if _, err := ds.store.Import(ctx, layout, graph.ImportOptions{}); err != nil {
				t.Fatalf("import: %v", err)
			}
			mounts, err := ds.store.CreateContainer(ctx, "c1", sameTreeImageName)
			if err != nil {
				t.Fatalf("create container: %v", err)
			}
			t.Cleanup(func() {
				if err := ds.store.RemoveContainer(ctx, "c1"); err != nil {
					t.Errorf("remove container: %v", err)
				}
			})
			rootfs := ds.mountDir(t, "container")
			if err := graph.MountAll(mounts, rootfs); err != nil {
				t.Fatalf("mount the container (%+v): %v", mounts, err)
			}
			mounted := true
			t.Cleanup(func() {
				if mounted {
					_ = graph.UnmountAll(rootfs)
				}
			})
			containerChanges(t, rootfs)
			live, err := treeManifest(rootfs, manifestOptions{})
			if err != nil {
				t.Fatalf("manifest of the container: %v", err)
			}
			if err := graph.UnmountAll(rootfs); err != nil {
				t.Fatalf("unmount the container: %v", err)
			}
			mounted = false

			l, err := ds.store.CommitContainer(ctx, "c1")
			if err != nil {
				t.Fatalf("commit container: %v", err)
			}
			if _, err := ds.store.CreateImage(ctx, "roundtrip:latest", l.ChainID, ocispec.Image{}); err != nil {
				t.Fatalf("create image of the committed layer: %v", err)
			}
			mnt := ds.mountImage(t, "roundtrip:latest", "committed")
			m, err := treeManifest(mnt, manifestOptions{})
			if err != nil {
				t.Fatalf("manifest of the committed image: %v", err)
			}
			ds.unmountImage(t, mnt)
			if d := diffManifests(live, m); len(d) > 0 {
				t.Errorf("%s: the committed layer's tree differs from the container's in %d entries:\n%s", name, len(d), strings.Join(d, "\n"))
			}
			results[name] = roundTrip{diffID: l.DiffID, manifest: m}
			t.Logf("%s: committed layer DiffID %s, %d paths, manifest %.16s", name, l.DiffID, len(m), m.hash())
		})
	}

	ref, ok := results[driverNames[0]]
	for _, name := range driverNames[1:] {
		r, ok2 := results[name]
		if !ok || !ok2 {
			continue
		}
		d := diffManifests(ref.manifest, r.manifest)
		if len(d) > 0 {
			t.Errorf("committed trees of %s and %s differ in %d entries:\n%s", driverNames[0], name, len(d), strings.Join(d, "\n"))
		}
		if r.diffID == ref.diffID {
			t.Logf("%s and %s committed the same DiffID %s", driverNames[0], name, r.diffID)
		} else {
			t.Logf("%s and %s committed different DiffIDs (%s vs %s); trees equal: %v", driverNames[0], name, ref.diffID, r.diffID, len(d) == 0)
		}
	}
}
