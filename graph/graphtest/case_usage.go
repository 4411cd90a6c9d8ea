package graphtest

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/unionstack/unionstack/graph"
)

// writeRandom writes size random bytes to the new file path and syncs it,
// so that its blocks are allocated when usage is measured.
func writeRandom(t testing.TB, path string, size int, seed uint64) {
	t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	must(t, err, "create %s", path)
	_, err = f.Write(data)
	must(t, err, "write %s", path)
	must(t, f.Sync(), "sync %s", path)
	must(t, f.Close(), "close %s", path)
}

// testUsage: Usage counts bytes and inodes (hard links once), is stable
// across Commit and stays put when children change.
func testUsage(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	const mib = 1 << 20
	extraInodes, extraBytes := s.features.UsageExtraInodes, s.features.UsageExtraBytes
	usage := func(key string) graph.Usage {
		t.Helper()
		u, err := d.Usage(ctx, key)
		must(t, err, "usage of %s", key)
		return u
	}

	_, err := d.Prepare(ctx, "empty", "")
	must(t, err, "prepare empty")
	if u := usage("empty"); u.Inodes > 1+extraInodes || u.Size > 64<<10+extraBytes {
		t.Errorf("usage of an empty snapshot: %+v", u)
	}

	dir := PrepareTree(t, d, "base-active", "", Dir("dir", 0o755), File("dir/small", "s", 0o644), File("other", "o", 0o644))
	writeRandom(t, filepath.Join(dir, "big"), mib, 1)
	WriteTree(t, dir, Hardlink("dir/big-link", "big"))
	const names = 4 // dir, dir/small, other, big (its second name is no inode)
	u := usage("base-active")
	if u.Inodes < names || u.Inodes > names+1+extraInodes {
		t.Errorf("usage of base-active: %d inodes, want %d (+1 for the root directory)", u.Inodes, names)
	}
	if u.Size < mib || u.Size >= 2*mib+extraBytes {
		t.Errorf("usage of base-active: %d bytes, want at least 1 MiB and the hard-linked 1 MiB once (< 2 MiB)", u.Size)
	}
	Unmount(t, dir)
	before := usage("base-active")
	must(t, d.Commit(ctx, "base", "base-active"), "commit base")
	if got := usage("base"); got != before {
		t.Errorf("usage of base after commit: %+v, before commit: %+v", got, before)
	}
	if got := usage("base"); got != before {
		t.Errorf("usage of base asked again: %+v, want %+v", got, before)
	}

	child := PrepareTree(t, d, "child", "base", File("other", "changed", 0o644))
	writeRandom(t, filepath.Join(child, "big2"), 2*mib, 2)
	if got := usage("child"); got.Size < 2*mib || got.Inodes < 2 {
		t.Errorf("usage of child with a 2 MiB file: %+v", got)
	}
	if got := usage("base"); got != before {
		t.Errorf("usage of base after its child changed: %+v, want %+v", got, before)
	}
	view := ViewTree(t, d, "view", "base")
	_ = usage("view")
	CheckTree(t, view, File("dir/small", "s", 0o644), Hardlink("dir/big-link", "big"))
}
