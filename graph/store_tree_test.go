package graph_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testimage"
	"golang.org/x/sys/unix"
)

// stMountTree mounts mounts on a fresh directory, unmounted at cleanup.
func stMountTree(t *testing.T, mounts []graph.Mount) string {
	t.Helper()
	dir := t.TempDir()
	if err := graph.MountAll(mounts, dir); err != nil {
		t.Fatalf("mount %v: %v", mounts, err)
	}
	t.Cleanup(func() {
		if err := graph.UnmountAll(dir); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestStoreRootfsMatchesGNUTar unpacks the busybox image (from the OCI
// layout and from the docker archive) through vfs and compares the root
// filesystem with what GNU tar gives when the layers are extracted by hand
// with whiteouts applied by hand: paths, types, modes, owners, content,
// link targets, hard links and xattrs.
func TestStoreRootfsMatchesGNUTar(t *testing.T) {
	ctx := context.Background()
	layout, _, img := testimage.BusyboxImage(t)
	archivePath, _ := testimage.BusyboxDockerArchive(t)
	want := t.TempDir()
	img.ExtractWithTar(t, want)

	for _, src := range []string{layout, archivePath} {
		e := newStoreEnv(t, graph.StoreOptions{})
		e.mustImport(src, graph.ImportOptions{})
		mounts, err := e.s.CreateContainer(ctx, "c1", testimage.DefaultName)
		if err != nil {
			t.Fatal(err)
		}
		got := stMountTree(t, mounts)
		diffs, err := testimage.CompareTrees(want, got)
		if err != nil {
			t.Fatal(err)
		}
		if len(diffs) > 0 {
			t.Errorf("%s: rootfs differs from GNU tar's:\n%s", filepath.Base(src), strings.Join(diffs, "\n"))
		}
		// Spot checks that the image really holds what the comparison relies on.
		for _, p := range []string{"bin/busybox", "opt/data/new", "run/fifo", "usr/share/doc/readme.link", "etc/localtime"} {
			if _, err := os.Lstat(filepath.Join(got, p)); err != nil {
				t.Errorf("%s missing: %v", p, err)
			}
		}
		for _, p := range []string{"etc/motd", "opt/data/a", "var/cache/old", "bin/echo"} {
			if _, err := os.Lstat(filepath.Join(got, p)); err == nil {
				t.Errorf("%s should be deleted by a whiteout", p)
			}
		}
	}
}

// TestStoreMountImage mounts a read-only view of an image, checks it
// holds the layers and keeps them referenced, and unmounts it.
func TestStoreMountImage(t *testing.T) {
	ctx := context.Background()
	e := newStoreEnv(t, graph.StoreOptions{})
	layout, _, _ := testimage.BusyboxImage(t)
	e.mustImport(layout, graph.ImportOptions{})
	dir := t.TempDir()
	if err := e.s.MountImage(ctx, testimage.DefaultName, dir); err != nil {
		t.Fatal(err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			graph.UnmountAll(dir)
		}
	})
	data, err := os.ReadFile(filepath.Join(dir, "etc/hostname"))
	if err != nil || string(data) != "layer1\n" {
		t.Errorf("etc/hostname = %q, %v", data, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); err == nil {
		t.Errorf("the image view is writable")
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil || sfs.Flags&(unix.ST_NOSUID|unix.ST_NODEV) != unix.ST_NOSUID|unix.ST_NODEV {
		t.Errorf("the image view's statfs flags %#x, %v: want nosuid and nodev", sfs.Flags, err)
	}
	if err := e.s.MountImage(ctx, testimage.DefaultName, dir); err == nil {
		t.Errorf("second mount at the same dir succeeded")
	}
	if _, err := e.s.RemoveImage(ctx, testimage.DefaultName, false); err == nil {
		t.Errorf("RemoveImage succeeded while the image is mounted")
	}
	if removed, _ := e.s.Prune(ctx); len(removed) != 0 {
		t.Errorf("prune removed %v while mounted", removed)
	}
	ms, err := e.s.ImageMounts(ctx)
	if err != nil || len(ms) != 1 || ms[0].Dir != dir {
		t.Errorf("ImageMounts = %+v, %v", ms, err)
	}
	// The record survives a reopen.
	e.close()
	e.open(graph.StoreOptions{})
	if err := e.s.UnmountImage(ctx, dir); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("dir not empty after unmount: %v", ents)
	}
	if n := len(e.snapshots()); n != 3 {
		t.Errorf("view not removed: %v", e.snapshots())
	}
	if err := e.s.UnmountImage(ctx, dir); err == nil {
		t.Errorf("second unmount succeeded")
	}
}
