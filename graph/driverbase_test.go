package graph

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/unionstack/unionstack/graph/archive"
	"github.com/unionstack/unionstack/internal/testenv"
)

// dirBackend is a test Backend on plain directories: each snapshot is
// ROOT/ID/fs, a copy of its parent's tree, mounted with a bind mount.
type dirBackend struct {
	root string

	mu        sync.Mutex
	creates   []Snapshot
	commits   []Snapshot
	removes   []string
	cleanedUp []string // ids Cleanup removed
	closed    bool

	// hook, when set, runs at the start of each call (op is "create",
	// "create-done", "commit", "remove", "remove-half") and may fail it.
	hook func(op string, id string) error
}

func newDirBackend(t testing.TB, root string) *dirBackend {
	t.Helper()
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	return &dirBackend{root: root}
}

func (b *dirBackend) dir(id string) string { return filepath.Join(b.root, id) }

func (b *dirBackend) call(op, id string) error {
	if b.hook == nil {
		return nil
	}
	return b.hook(op, id)
}

func (b *dirBackend) Create(ctx context.Context, s Snapshot) error {
	b.mu.Lock()
	b.creates = append(b.creates, s)
	b.mu.Unlock()
	if err := b.call("create", s.ID); err != nil {
		return err
	}
	fsDir := filepath.Join(b.dir(s.ID), "fs")
	if err := os.MkdirAll(fsDir, 0o755); err != nil {
		return err
	}
	if len(s.ParentIDs) > 0 {
		if err := copyDirTree(filepath.Join(b.dir(s.ParentIDs[0]), "fs"), fsDir); err != nil {
			return err
		}
	}
	return b.call("create-done", s.ID)
}

func (b *dirBackend) Mounts(ctx context.Context, s Snapshot) ([]Mount, error) {
	opts := []string{"rbind", "rw"}
	if s.Kind == KindView {
		opts = []string{"rbind", "ro"}
	}
	return []Mount{{Type: "bind", Source: filepath.Join(b.dir(s.ID), "fs"), Options: opts}}, nil
}

func (b *dirBackend) Commit(ctx context.Context, s Snapshot) error {
	b.mu.Lock()
	b.commits = append(b.commits, s)
	b.mu.Unlock()
	if err := b.call("commit", s.ID); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.dir(s.ID), "committed"), nil, 0o644)
}

func (b *dirBackend) Remove(ctx context.Context, id string) error {
	b.mu.Lock()
	b.removes = append(b.removes, id)
	b.mu.Unlock()
	if err := b.call("remove", id); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(b.dir(id), "committed")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := b.call("remove-half", id); err != nil {
		return err
	}
	return os.RemoveAll(b.dir(id))
}

func (b *dirBackend) Usage(ctx context.Context, s Snapshot) (Usage, error) {
	var u Usage
	err := filepath.WalkDir(filepath.Join(b.dir(s.ID), "fs"), func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		u.Inodes++
		if fi.Mode().IsRegular() {
			u.Size += fi.Size()
		}
		return nil
	})
	return u, err
}

func (b *dirBackend) Cleanup(ctx context.Context, live map[string]bool) error {
	entries, err := os.ReadDir(b.root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !live[e.Name()] {
			if err := os.RemoveAll(b.dir(e.Name())); err != nil {
				return err
			}
			b.mu.Lock()
			b.cleanedUp = append(b.cleanedUp, e.Name())
			b.mu.Unlock()
		}
	}
	return nil
}

func (b *dirBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

// dataIDs lists the ids that have data, sorted.
func (b *dirBackend) dataIDs(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(b.root)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	sort.Strings(ids)
	return ids
}

// dirLayerBackend is a dirBackend whose active snapshots have a layer dir.
type dirLayerBackend struct{ *dirBackend }

func (b dirLayerBackend) LayerDir(ctx context.Context, s Snapshot) (string, archive.Format, error) {
	return filepath.Join(b.dir(s.ID), "fs"), archive.FormatAUFS, nil
}

// copyDirTree copies the directories and regular files of src into dst.
func copyDirTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := de.Info()
		if err != nil {
			return err
		}
		switch {
		case de.IsDir():
			return os.MkdirAll(to, fi.Mode().Perm())
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, data, fi.Mode().Perm())
		}
		return fmt.Errorf("copyDirTree: unsupported file %s", p)
	})
}

// metaDriver is a Driver on a dirBackend in a fresh directory.
type metaDriver struct {
	Driver
	b    *dirBackend
	root string
}

// newMetaDriver opens a driver whose metadata is in root and whose data is
// in root/data; it is closed when the test ends.
func newMetaDriver(t *testing.T, root string) *metaDriver {
	t.Helper()
	testenv.NeedRoot(t)
	b := newDirBackend(t, filepath.Join(root, "data"))
	d, err := NewDriver(root, b)
	if err != nil {
		t.Fatalf("NewDriver: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return &metaDriver{Driver: d, b: b, root: root}
}

// mountRW mounts the snapshot's mounts at a fresh directory, unmounted when
// the test ends, and returns it.
func mountForTest(t *testing.T, mounts []Mount) string {
	t.Helper()
	dir := t.TempDir()
	if err := MountAll(mounts, dir); err != nil {
		t.Fatalf("MountAll: %v", err)
	}
	t.Cleanup(func() {
		if err := UnmountAll(dir); err != nil {
			t.Errorf("UnmountAll: %v", err)
		}
	})
	return dir
}

// wantErrIs fails t unless err wraps sentinel.
func wantErrIs(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: got error %v, want one wrapping %q", what, err, sentinel)
	}
}
