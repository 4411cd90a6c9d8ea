package overlay

import (
	"context"
	"slices"
	"strings"

	"github.com/unionstack/unionstack/graph"
)

// Mounts says how to mount s:
//
//   - a view of nothing or of a single layer: a read-only bind mount of
//     that layer's fs (or of its own empty fs);
//   - a view of a deeper chain: an overlay of lower dirs only (read-only);
//   - an active snapshot without parent: a read-write bind mount of its fs;
//   - an active snapshot on a chain: an overlay with its fs as upper dir.
//
// Lower dirs are the short root/l/ links, nearest parent first, in one
// lowerdir= option while the mount data fits a page, else as one
// "lowerdir+=PATH" option per layer for the new mount API.
func (b *backend) Mounts(ctx context.Context, s graph.Snapshot) ([]graph.Mount, error) {
	const op = "overlay mounts"
	if err := validID(op, s.ID); err != nil {
		return nil, err
	}
	switch s.Kind {
	case graph.KindView:
		switch len(s.ParentIDs) {
		case 0:
			return []graph.Mount{bindMount(b.fsDir(s.ID), "ro")}, nil
		case 1:
			return []graph.Mount{bindMount(b.fsDir(s.ParentIDs[0]), "ro")}, nil
		}
		return b.overlayMount(op, s, []string{"ro"})
	case graph.KindActive:
		if len(s.ParentIDs) == 0 {
			return []graph.Mount{bindMount(b.fsDir(s.ID), "rw")}, nil
		}
		return b.overlayMount(op, s, []string{"upperdir=" + b.fsDir(s.ID), "workdir=" + b.workDir(s.ID)})
	}
	return nil, graph.Errorf(graph.ErrInvalidArgument, op, s.ID, "a %v snapshot has no mounts", s.Kind)
}

// bindMount is a recursive bind mount of dir, "ro" or "rw".
func bindMount(dir, mode string) graph.Mount {
	return graph.Mount{Type: "bind", Source: dir, Options: []string{mode, "rbind"}}
}

// overlayMount builds the overlay mount of s's parents with the options
// extra (upper and work dir, or "ro").
func (b *backend) overlayMount(op string, s graph.Snapshot, extra []string) ([]graph.Mount, error) {
	if len(s.ParentIDs) > MaxDepth {
		return nil, graph.Errorf(graph.ErrNotSupported, op, s.ID, "chain of %d layers: overlayfs stacks at most %d", len(s.ParentIDs), MaxDepth)
	}
	lowers := make([]string, len(s.ParentIDs))
	for i, p := range s.ParentIDs {
		if err := validID(op, p); err != nil {
			return nil, err
		}
		lowers[i] = b.lowerPath(p)
	}
	opts := []string{"index=off", "metacopy=off", "redirect_dir=" + b.redirect}
	opts = append(opts, extra...)
	legacy := slices.Concat(opts, []string{"lowerdir=" + strings.Join(lowers, ":")})
	if len(strings.Join(legacy, ",")) < b.pageSize {
		return []graph.Mount{{Type: "overlay", Source: "overlay", Options: legacy}}, nil
	}
	if !b.lowerAdd {
		return nil, graph.Errorf(graph.ErrNotSupported, op, s.ID, "chain of %d layers does not fit a page of mount options and this kernel has no lowerdir+ (needs 6.8+)", len(s.ParentIDs))
	}
	for _, l := range lowers {
		opts = append(opts, "lowerdir+="+l)
	}
	return []graph.Mount{{Type: "overlay", Source: "overlay", Options: opts}}, nil
}
