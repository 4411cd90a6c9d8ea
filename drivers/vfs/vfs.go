// Package vfs is the reference graph driver: every snapshot is a full copy
// of its parent's tree in a plain directory, and its mounts are bind
// mounts. It is slow on purpose and needs nothing from the kernel beyond a
// filesystem; it defines the semantics the other drivers must match.
//
// Data lives under ROOT/snapshots/ID/fs, one directory per snapshot id; the
// metadata (keys, parents, labels) is kept by graph.NewDriver.
package vfs

import (
	"context"
	"os"
	"path/filepath"
	"strconv"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/fsutil"
)

// Name is the name vfs registers under.
const Name = "vfs"

func init() {
	graph.Register(Name, graph.Registration{
		New: New,
		Doc: "full copy of the parent per snapshot, bind mounts (reference semantics, slow)",
	})
}

// New opens (or creates) a vfs driver with its data under root. vfs takes
// no options.
func New(root string, options map[string]string) (graph.Driver, error) {
	for k := range options {
		return nil, graph.Errorf(graph.ErrInvalidArgument, "open vfs", root, "unknown option %q (vfs takes none)", k)
	}
	b, err := NewBackend(root)
	if err != nil {
		return nil, err
	}
	return graph.NewDriver(b.root, b)
}

// Backend is the data half of the vfs driver: one directory per snapshot.
type Backend struct {
	root string // absolute; data is under root/snapshots
}

var _ graph.Backend = (*Backend)(nil)

// NewBackend returns a Backend keeping its data under root/snapshots,
// creating that directory when missing.
func NewBackend(root string) (*Backend, error) {
	if root == "" {
		return nil, graph.Errorf(graph.ErrInvalidArgument, "open vfs", root, "empty root directory")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, graph.Wrap(err, "open vfs", root)
	}
	if err := os.MkdirAll(filepath.Join(abs, "snapshots"), 0o700); err != nil {
		return nil, graph.Wrap(err, "open vfs", root)
	}
	return &Backend{root: abs}, nil
}

// snapshotDir is the directory holding everything of snapshot id.
func (b *Backend) snapshotDir(id string) string {
	return filepath.Join(b.root, "snapshots", id)
}

// FSDir is the directory holding the tree of snapshot id.
func (b *Backend) FSDir(id string) string {
	return filepath.Join(b.snapshotDir(id), "fs")
}

// checkID refuses ids that are not plain decimal numbers, so that an id
// can never name a path outside root/snapshots.
func checkID(op, id string) error {
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return graph.Errorf(graph.ErrInvalidArgument, op, id, "snapshot id is not a decimal number")
	}
	return nil
}

// Create makes the tree of a new snapshot: an empty directory for a base
// snapshot, otherwise a full copy of the nearest parent's tree.
func (b *Backend) Create(ctx context.Context, s graph.Snapshot) error {
	const op = "vfs create"
	if err := checkID(op, s.ID); err != nil {
		return err
	}
	dir := b.snapshotDir(s.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if os.IsExist(err) {
			return graph.Errorf(graph.ErrAlreadyExists, op, s.ID, "data directory %s already exists", dir)
		}
		return graph.Wrap(err, op, s.ID)
	}
	var err error
	if len(s.ParentIDs) == 0 {
		err = os.Mkdir(b.FSDir(s.ID), 0o755)
	} else if err = checkID(op, s.ParentIDs[0]); err == nil {
		err = CopyTree(ctx, b.FSDir(s.ParentIDs[0]), b.FSDir(s.ID))
	}
	if err != nil {
		os.RemoveAll(dir)
		return graph.Wrap(err, op, s.ID)
	}
	return nil
}

// Mounts returns a bind mount of the snapshot's tree, read-only for a view.
func (b *Backend) Mounts(ctx context.Context, s graph.Snapshot) ([]graph.Mount, error) {
	if err := checkID("vfs mounts", s.ID); err != nil {
		return nil, err
	}
	mode := "rw"
	if s.Kind == graph.KindView {
		mode = "ro"
	}
	return []graph.Mount{{
		Type:    "bind",
		Source:  b.FSDir(s.ID),
		Options: []string{"rbind", mode},
	}}, nil
}

// Commit has nothing to do: the tree of an active snapshot is already what
// the committed snapshot holds.
func (b *Backend) Commit(ctx context.Context, s graph.Snapshot) error {
	return checkID("vfs commit", s.ID)
}

// Remove deletes the data of snapshot id; missing data is not an error.
func (b *Backend) Remove(ctx context.Context, id string) error {
	if err := checkID("vfs remove", id); err != nil {
		return err
	}
	if err := os.RemoveAll(b.snapshotDir(id)); err != nil {
		return graph.Wrap(err, "vfs remove", id)
	}
	return nil
}

// Usage walks the snapshot's tree: every inode once (hard links counted
// once) and the blocks they take on disk.
func (b *Backend) Usage(ctx context.Context, s graph.Snapshot) (graph.Usage, error) {
	if err := checkID("vfs usage", s.ID); err != nil {
		return graph.Usage{}, err
	}
	u, err := fsutil.DiskUsage(ctx, b.FSDir(s.ID))
	return graph.Usage{Inodes: u.Inodes, Size: u.Size}, graph.Wrap(err, "vfs usage", s.ID)
}

// Cleanup removes the data of every snapshot id not in live, and anything
// else found in the snapshots directory.
func (b *Backend) Cleanup(ctx context.Context, live map[string]bool) error {
	dir := filepath.Join(b.root, "snapshots")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return graph.Wrap(err, "vfs cleanup", dir)
	}
	for _, e := range entries {
		if live[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return graph.Wrap(err, "vfs cleanup", e.Name())
		}
	}
	return nil
}

// Close has nothing to release.
func (b *Backend) Close() error { return nil }
