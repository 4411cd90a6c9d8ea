// Package graph is the layer graph: the Driver interface every storage
// driver implements, the registry that names them, the metadata store that
// keeps the snapshot tree for all of them, mounts as data, and the image
// layer Store built on top.
//
// A layer graph is a tree of snapshots. A committed snapshot is an image
// layer: immutable, and the only kind that may be a parent. An active
// snapshot is a writable leaf (a container's rw layer, or a layer being
// unpacked). A view is a read-only leaf.
package graph

import (
	"context"
	"time"
)

// Kind says what a snapshot is.
type Kind int

// The snapshot kinds.
const (
	KindUnknown Kind = iota
	KindView
	KindActive
	KindCommitted
)

// String names the kind as containerd does ("View", "Active", "Committed").
func (k Kind) String() string {
	switch k {
	case KindView:
		return "View"
	case KindActive:
		return "Active"
	case KindCommitted:
		return "Committed"
	}
	return "Unknown"
}

// ParseKind is the inverse of Kind.String; it accepts any letter case.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "View", "view":
		return KindView, nil
	case "Active", "active":
		return KindActive, nil
	case "Committed", "committed":
		return KindCommitted, nil
	}
	return KindUnknown, Errorf(ErrInvalidArgument, "parse kind", s, "unknown snapshot kind")
}

// Info is the metadata of one snapshot, as the metadata store keeps it.
type Info struct {
	Kind    Kind              // Active, View or Committed
	Name    string            // the key of the snapshot
	Parent  string            // the key of the parent, "" for a base snapshot
	Labels  map[string]string // free-form labels; Update may change them
	Created time.Time
	Updated time.Time
}

// Usage is the resources a snapshot's own data takes, not counting parents.
type Usage struct {
	Inodes int64 // number of inodes
	Size   int64 // bytes on disk
}

// Add adds u2 to u.
func (u *Usage) Add(u2 Usage) {
	u.Inodes += u2.Inodes
	u.Size += u2.Size
}

// Mount is one mount to perform, as data. Whoever needs a snapshot's tree
// hands its mounts to MountAll; drivers never mount behind the caller.
//
// Type is a filesystem type as mount(8) takes it: "bind", "overlay",
// "ext4", "xfs", or "fuse3.HELPER" for a FUSE filesystem served by the
// program HELPER (invoked as a mount helper: HELPER SOURCE TARGET -o OPTIONS).
type Mount struct {
	Type    string   `json:"type"`
	Source  string   `json:"source"`
	Target  string   `json:"target,omitempty"` // sub-path below the mount root; "" for the root itself
	Options []string `json:"options,omitempty"`
}

// WalkFunc is called by Walk for each snapshot that matches the filters.
type WalkFunc func(ctx context.Context, info Info) error

// Opt sets an option of Prepare, View or Commit.
type Opt func(info *Info) error

// WithLabels sets labels on the snapshot being created or committed.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		if info.Labels == nil {
			info.Labels = make(map[string]string, len(labels))
		}
		for k, v := range labels {
			info.Labels[k] = v
		}
		return nil
	}
}

// Driver is a storage driver: it keeps a tree of snapshots and says how to
// mount each one. Every method takes a context; errors wrap the sentinels of
// this package (ErrNotFound, ErrAlreadyExists, ...) with the operation and key.
type Driver interface {
	// Prepare creates an active snapshot key on top of the committed
	// snapshot parent ("" for an empty base) and returns its mounts.
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error)
	// View creates a read-only snapshot key of the committed snapshot parent.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error)
	// Mounts returns the mounts of an active snapshot or a view.
	Mounts(ctx context.Context, key string) ([]Mount, error)
	// Commit turns the active snapshot key into the committed snapshot
	// name. It copies nothing; key no longer exists afterwards.
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove removes a snapshot. It fails with ErrFailedPrecondition while
	// the snapshot has children.
	Remove(ctx context.Context, key string) error
	// Stat returns the metadata of a snapshot.
	Stat(ctx context.Context, key string) (Info, error)
	// Update changes the labels of a snapshot ("labels" or "labels.KEY"
	// field paths; with none, all labels are replaced).
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Usage returns the bytes and inodes the snapshot's own data takes.
	Usage(ctx context.Context, key string) (Usage, error)
	// Walk calls fn for each snapshot matching all filters. A filter is
	// "kind==Active", "parent==KEY", "name==KEY", "labels.KEY==VALUE" or
	// "labels.KEY" (label present).
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	// Close releases the driver's resources.
	Close() error
}
