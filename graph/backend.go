package graph

import (
	"context"

	"github.com/unionstack/unionstack/graph/archive"
)

// Snapshot is what a Backend is told about one snapshot: its numeric id,
// its kind, and the ids of its committed ancestors, nearest first.
type Snapshot struct {
	ID        string   // numeric id, unique for the life of the store
	Kind      Kind     // Active, View or Committed
	ParentIDs []string // ids of the parent chain, nearest parent first
}

// Backend is the data half of a driver. Metadata (keys, parents, labels,
// kinds, crash recovery) is kept once, by NewDriver, in a bbolt store; a
// Backend keeps only the data of each snapshot, by numeric id.
//
// NewDriver calls a Backend's methods with the metadata already checked:
// Create gets a fresh id whose parents exist and are committed, Remove an id
// that has no children. A Backend must tolerate Remove of an id whose data is
// missing or partly created (crash recovery calls it that way).
type Backend interface {
	// Create makes the data of a new active snapshot or view.
	Create(ctx context.Context, s Snapshot) error
	// Mounts says how to mount the active snapshot or view s.
	Mounts(ctx context.Context, s Snapshot) ([]Mount, error)
	// Commit is told that the active snapshot s is now committed; most
	// backends have nothing to do.
	Commit(ctx context.Context, s Snapshot) error
	// Remove deletes the data of snapshot id.
	Remove(ctx context.Context, id string) error
	// Usage measures the data of s itself (not its parents).
	Usage(ctx context.Context, s Snapshot) (Usage, error)
	// Cleanup removes data of any id not in live (left by a crash).
	Cleanup(ctx context.Context, live map[string]bool) error
	// Close releases the backend's resources.
	Close() error
}

// LayerDirer is implemented by a Driver whose active snapshots keep their
// own changes in one directory that already is a layer diff in a known
// whiteout form (overlay's upper dir, the fuse driver's rw branch). The
// Store then unpacks layers straight into that directory and writes diffs
// straight from it, instead of mounting and comparing trees.
type LayerDirer interface {
	// LayerDir returns the directory holding the changes of the active
	// snapshot key and the whiteout form they are stored in. It returns an
	// error wrapping ErrNotSupported when the directory is not a faithful
	// diff right now (e.g. overlay redirects), and the caller falls back to
	// mounting and comparing.
	LayerDir(ctx context.Context, key string) (dir string, format archive.Format, err error)
	// ParentLayerDirs returns the layer directories of key's committed
	// parents, nearest first, where a hard link of a layer unpacked into
	// LayerDir finds a target that lies in a lower layer.
	ParentLayerDirs(ctx context.Context, key string) ([]string, error)
}

// BackendLayerDirer is the Backend side of LayerDirer: a Backend that
// implements it makes the Driver returned by NewDriver a LayerDirer.
//
// Called for a committed snapshot, LayerDir must return its directory
// without checks (ParentLayerDirs uses it so).
type BackendLayerDirer interface {
	LayerDir(ctx context.Context, s Snapshot) (dir string, format archive.Format, err error)
}
