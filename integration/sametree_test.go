package integration

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testimage"
)

// Whether directory mtimes are compared across drivers.
//
// They are: every layer tar carries each directory it touches with its
// mtime, and each driver must show the mtime of the topmost layer that has
// the directory (vfs: Apply restores directory times after writing the
// entries below them; overlay and fuse: the merged directory takes the
// attributes of its topmost branch). The root directory is the exception:
// no layer names it, each driver creates it, so its mtime is not compared
// (see treeManifest).
const compareDirMtimes = true

// TestSameImageSameTree imports one multi-layer image into vfs, overlay
// and fuse stores: each mounted rootfs must have the same manifest (paths,
// type, mode, owner, mtime, xattrs, symlink target, device numbers,
// content, link counts and hard-link groups), the same as GNU tar unpacks
// it, and each store must export the imported DiffIDs.
func TestSameImageSameTree(t *testing.T) {
	layout, img := sameTreeImage(t)
	opts := manifestOptions{NoDirMtimes: !compareDirMtimes}

	// The independent reference: GNU tar, whiteouts applied by hand.
	tarDir := t.TempDir()
	img.ExtractWithTar(t, tarDir)
	want, err := treeManifest(tarDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tar reference: %d paths, manifest %.16s", len(want), want.hash())

	got := map[string]manifest{}
	for _, name := range driverNames {
		t.Run(name, func(t *testing.T) {
			ds := openDriverStore(t, name)
			ctx := context.Background()
			imgs, err := ds.store.Import(ctx, layout, graph.ImportOptions{})
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			if len(imgs) != 1 || !slices.Equal(imgs[0].DiffIDs, img.DiffIDs()) {
				t.Fatalf("import gave %d images, DiffIDs %v; want 1 with %v", len(imgs), diffIDsOf(imgs), img.DiffIDs())
			}
			mnt := ds.mountImage(t, sameTreeImageName, "rootfs")
			m, err := treeManifest(mnt, opts)
			if err != nil {
				t.Fatalf("manifest of the mounted rootfs: %v", err)
			}
			ds.unmountImage(t, mnt)
			got[name] = m
			t.Logf("%s: %d paths, manifest %.16s", name, len(m), m.hash())
			if d := diffManifests(want, m); len(d) > 0 {
				t.Errorf("%s rootfs differs from the tar reference in %d entries:\n%s", name, len(d), strings.Join(d, "\n"))
			}

			exported := filepath.Join(ds.dir, "export")
			if err := ds.store.Export(ctx, sameTreeImageName, exported, graph.ExportOptions{}); err != nil {
				t.Fatalf("export: %v", err)
			}
			if d := exportedDiffIDs(t, exported); !slices.Equal(d, img.DiffIDs()) {
				t.Errorf("%s exports DiffIDs\n\t%v\nwant\n\t%v", name, d, img.DiffIDs())
			}
		})
	}

	// And pairwise against the reference driver, so a failure says which
	// drivers agree.
	ref := got[driverNames[0]]
	for _, name := range driverNames[1:] {
		m, ok := got[name]
		if !ok || ref == nil {
			continue
		}
		if ref.hash() != m.hash() {
			t.Errorf("%s and %s rootfs differ (manifests %.16s vs %.16s):\n%s", driverNames[0], name,
				ref.hash(), m.hash(), strings.Join(diffManifests(ref, m), "\n"))
		}
	}
}

// exportedDiffIDs reads the OCI layout dir and returns the sha256 of each
// decompressed layer, recomputed here.
func exportedDiffIDs(t testing.TB, dir string) []digest.Digest {
	t.Helper()
	_, _, layers, err := testimage.ReadLayout(dir)
	if err != nil {
		t.Fatalf("read exported layout %s: %v", dir, err)
	}
	var out []digest.Digest
	for _, l := range layers {
		out = append(out, digest.Digest(fmt.Sprintf("sha256:%x", sha256.Sum256(l))))
	}
	return out
}
