// Package fuse is the graph driver that stacks layer directories with the
// unionfs FUSE filesystem. A committed snapshot is a branch directory in
// OCI form (aufs whiteouts, as OCI layers use); an active snapshot is an rw
// branch on top of its parents' ro branches. Mounts are returned as data,
// "fuse3.unionctl" with a dirs= option: whoever mounts them hands the
// FUSE connection to a running `unionctl serve` when there is one (see
// server.go), else runs the unionctl mount helper; unmounting ends the
// mount's serving (and a helper's daemon).
package fuse

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/archive"
	"github.com/unionstack/unionstack/internal/fsutil"
)

// DriverName is the name the driver registers under.
const DriverName = "fuse"

// HelperName is the mount helper that serves the driver's mounts
// ("fuse3.unionctl").
const HelperName = "unionctl"

// MaxDepth is the deepest parent chain the driver mounts. unionfs has no
// kernel stack limit; the bound keeps the dirs= option (one argv word)
// well under the kernel's 128 KiB per-argument limit.
const MaxDepth = 1000

func init() {
	graph.Register(DriverName, graph.Registration{
		New:   New,
		Probe: Probe,
		Doc:   "layers stacked by the unionfs FUSE filesystem (aufs semantics, no kernel union fs needed)",
	})
}

// OptPassthrough is the driver option choosing the unionfs passthrough
// mode of writable mounts: "on" (the default) or "all" (lower files
// opened read-only too, at a price: a descriptor opened before a
// copy-up keeps reading the lower file, weaker than kernel overlayfs,
// whose read(2) follows the copy-up, and reopening such a descriptor
// through /proc/self/fd after the copy-up fails with ESTALE while it is
// open).
// Views, which never copy up, always pass every file through.
const OptPassthrough = "passthrough"

// backend keeps each snapshot's data in root/snapshots/ID/fs.
type backend struct {
	root string
	rr   realROCache // which committed layers mount as rr branches
	// passthroughAll mounts writable snapshots with passthrough=all.
	passthroughAll bool
}

// New opens the fuse driver with its data under root.
func New(root string, options map[string]string) (graph.Driver, error) {
	var ptAll bool
	for k, v := range options {
		switch {
		case k == OptPassthrough && v == "on":
			ptAll = false
		case k == OptPassthrough && v == "all":
			ptAll = true
		case k == OptPassthrough:
			return nil, graph.Errorf(graph.ErrInvalidArgument, "open fuse driver", root, "option %s=%q: want on or all", k, v)
		default:
			return nil, graph.Errorf(graph.ErrInvalidArgument, "open fuse driver", root, "unknown option %q (known: %s)", k, OptPassthrough)
		}
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, graph.Wrap(err, "open fuse driver", root)
	}
	if strings.ContainsAny(abs, ":,=") {
		return nil, graph.Errorf(graph.ErrInvalidArgument, "open fuse driver", abs, "root may not contain ':', ',' or '=' (they separate branches in dirs=)")
	}
	if err := os.MkdirAll(filepath.Join(abs, "snapshots"), 0o700); err != nil {
		return nil, graph.Wrap(err, "open fuse driver", abs)
	}
	return graph.NewDriver(abs, &backend{root: abs, passthroughAll: ptAll})
}

// Probe says whether FUSE and the unionctl helper are usable here.
func Probe(root string) (map[string]string, error) {
	features := map[string]string{}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return features, graph.Errorf(graph.ErrNotSupported, "probe fuse driver", root, "/dev/fuse is missing (modprobe fuse)")
	}
	fss, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(fss), "\tfuse\n") {
		return features, graph.Errorf(graph.ErrNotSupported, "probe fuse driver", root, "the kernel has no fuse filesystem")
	}
	helper, err := graph.LookupMountHelper(HelperName)
	if err != nil {
		return features, graph.Errorf(graph.ErrNotSupported, "probe fuse driver", root, "mount helper %s: %v", HelperName, err)
	}
	features["helper"] = helper
	features["mount_server"] = serverFeature()
	features["max_depth"] = fmt.Sprint(MaxDepth)
	return features, nil
}

func (b *backend) dir(id string) string { return filepath.Join(b.root, "snapshots", id) }

func (b *backend) fsDir(id string) string { return filepath.Join(b.dir(id), "fs") }

// Create makes an empty branch directory for the new snapshot.
func (b *backend) Create(ctx context.Context, s graph.Snapshot) error {
	if len(s.ParentIDs) >= MaxDepth {
		return graph.Errorf(graph.ErrInvalidArgument, "create snapshot", s.ID, "parent chain of %d layers exceeds the fuse driver's limit of %d", len(s.ParentIDs), MaxDepth)
	}
	if err := os.MkdirAll(b.dir(s.ID), 0o700); err != nil {
		return graph.Wrap(err, "create snapshot", s.ID)
	}
	if err := os.Mkdir(b.fsDir(s.ID), 0o755); err != nil {
		return graph.Wrap(err, "create snapshot", s.ID)
	}
	return nil
}

// Mounts returns a fuse3.unionctl mount of the snapshot's branch stack. An
// active snapshot without parents is a plain bind of its branch.
func (b *backend) Mounts(ctx context.Context, s graph.Snapshot) ([]graph.Mount, error) {
	if s.Kind == graph.KindActive && len(s.ParentIDs) == 0 {
		return []graph.Mount{{Type: "bind", Source: b.fsDir(s.ID), Options: []string{"rbind", "rw"}}}, nil
	}
	var dirs []string
	if s.Kind == graph.KindActive {
		dirs = append(dirs, b.fsDir(s.ID)+"=rw")
	}
	for _, p := range s.ParentIDs {
		mode := "=ro"
		if b.isRealRO(p) {
			mode = "=rr"
		}
		dirs = append(dirs, b.fsDir(p)+mode)
	}
	// Committed layers never change and the rw branch changes only
	// through the mount, so the kernel may cache names and attributes
	// for as long as it likes (aufs udba=none).
	opts := []string{"dirs=" + strings.Join(dirs, ":"), "udba=none"}
	if s.Kind == graph.KindView {
		opts = append(opts, "ro")
	} else if b.passthroughAll {
		opts = append(opts, "passthrough=all")
	}
	return []graph.Mount{{Type: "fuse3." + HelperName, Source: "unionctl", Options: opts}}, nil
}

// Commit drops unionfs's private work entries from the branch, so the
// committed layer holds only content and whiteouts, and marks a layer
// without whiteouts for mounting as an rr branch (realro.go).
func (b *backend) Commit(ctx context.Context, s graph.Snapshot) error {
	entries, err := os.ReadDir(b.fsDir(s.ID))
	if err != nil {
		return graph.Wrap(err, "commit snapshot", s.ID)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), archive.WhiteoutMetaPrefix) && e.Name() != archive.WhiteoutOpaque {
			if err := os.RemoveAll(filepath.Join(b.fsDir(s.ID), e.Name())); err != nil {
				return graph.Wrap(err, "commit snapshot", s.ID)
			}
		}
	}
	if err := b.markRealRO(s.ID); err != nil {
		return graph.Wrap(err, "commit snapshot", s.ID)
	}
	return nil
}

// Remove deletes the snapshot's directory, tolerating a partial one.
func (b *backend) Remove(ctx context.Context, id string) error {
	b.forgetRealRO(id)
	if err := fsutil.RemoveAll(b.dir(id)); err != nil {
		return graph.Wrap(err, "remove snapshot", id)
	}
	return nil
}

// Usage counts the branch's own inodes and blocks.
func (b *backend) Usage(ctx context.Context, s graph.Snapshot) (graph.Usage, error) {
	u, err := fsutil.DiskUsage(ctx, b.fsDir(s.ID))
	if err != nil {
		return graph.Usage{}, graph.Wrap(err, "usage", s.ID)
	}
	return graph.Usage{Inodes: u.Inodes, Size: u.Size}, nil
}

// Cleanup removes snapshot directories no metadata refers to.
func (b *backend) Cleanup(ctx context.Context, live map[string]bool) error {
	entries, err := os.ReadDir(filepath.Join(b.root, "snapshots"))
	if err != nil {
		return graph.Wrap(err, "cleanup", b.root)
	}
	for _, e := range entries {
		if !live[e.Name()] {
			if err := b.Remove(ctx, e.Name()); err != nil {
				return err
			}
		}
	}
	return nil
}

// LayerDir is the native diff/apply path: an active snapshot's rw branch
// already is its layer, in aufs form.
func (b *backend) LayerDir(ctx context.Context, s graph.Snapshot) (string, archive.Format, error) {
	return b.fsDir(s.ID), archive.FormatAUFS, nil
}

// MaxDepth is the deepest parent chain the driver mounts (graph.DepthLimiter).
func (b *backend) MaxDepth() int { return MaxDepth }

// Close has nothing to release.
func (b *backend) Close() error { return nil }
