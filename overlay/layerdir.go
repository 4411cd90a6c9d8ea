package overlay

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/archive"
)

// The trusted.overlay.* xattrs that make an upper dir differ from its diff.
const (
	xattrRedirect = "trusted.overlay.redirect"
	xattrMetacopy = "trusted.overlay.metacopy"
	xattrOpaque   = "trusted.overlay.opaque"
)

// LayerDir returns the directory holding s's own changes, for native diff
// and apply.
//
// A snapshot without parents is mounted as a plain bind mount of its fs
// dir: that dir is a full tree, returned as archive.FormatTree (a 0/0
// character device or a trusted.overlay.* xattr there is content, not
// overlay metadata).
//
// Otherwise it returns the upper dir as archive.FormatOverlay, unless the
// upper dir is not the layer a comparison of the mounted trees gives; then
// it returns an error wrapping graph.ErrNotSupported that names the entry,
// and the caller falls back to mounting and comparing:
//
//   - a directory rename stored as a redirect (redirect_dir), or a
//     metadata-only copy-up (metacopy): the content is not in the dir;
//   - an opaque directory: a native diff writes an opaque marker where the
//     tree comparison writes a whiteout per hidden name, so the DiffID
//     would depend on how the change was made, not on the result. With
//     redirect_dir=on the kernel makes every new directory made in a merged
//     directory opaque.
func (b *backend) LayerDir(ctx context.Context, s graph.Snapshot) (string, archive.Format, error) {
	const op = "overlay layer dir"
	if err := validID(op, s.ID); err != nil {
		return "", 0, err
	}
	dir := b.fsDir(s.ID)
	if len(s.ParentIDs) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return "", 0, graph.Wrap(err, op, s.ID)
		}
		return dir, archive.FormatTree, nil
	}
	if s.Kind == graph.KindCommitted {
		// Asked for a parent's directory (ParentLayerDirs): no checks.
		return dir, archive.FormatOverlay, nil
	}
	if err := checkFaithful(ctx, dir); err != nil {
		return "", 0, graph.Wrap(err, op, s.ID)
	}
	return dir, archive.FormatOverlay, nil
}

// checkFaithful walks an upper dir and fails, wrapping
// graph.ErrNotSupported, at the first entry that makes a FormatOverlay
// reading differ from a tree comparison (see LayerDir). Only directories
// (redirect, opaque) and regular files (metacopy) can carry those xattrs.
func checkFaithful(ctx context.Context, dir string) error {
	buf := make([]byte, 4096)
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if t := d.Type(); !t.IsDir() && !t.IsRegular() {
			return nil
		}
		names, err := listXattrs(path, &buf)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, n := range names {
			switch n {
			case xattrRedirect:
				return notSupported("directory %s was renamed across layers (overlay redirect): the upper dir is not a faithful diff", rel)
			case xattrMetacopy:
				return notSupported("%s is a metadata-only copy-up (overlay metacopy): the upper dir is not a faithful diff", rel)
			case xattrOpaque:
				return notSupported("directory %s is opaque (%s): its native diff would differ from the diff of the trees", rel, xattrOpaque)
			}
		}
		return nil
	})
}

// listXattrs lists the xattr names of path (not following symlinks),
// growing *buf as needed.
func listXattrs(path string, buf *[]byte) ([]string, error) {
	for {
		n, err := unix.Llistxattr(path, *buf)
		if err == unix.ERANGE {
			size, err := unix.Llistxattr(path, nil)
			if err != nil {
				return nil, fmt.Errorf("listxattr %s: %w", path, err)
			}
			*buf = make([]byte, size+256)
			continue
		}
		if err == unix.ENOTSUP {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listxattr %s: %w", path, err)
		}
		var names []string
		for _, name := range strings.Split(string((*buf)[:n]), "\x00") {
			if name != "" {
				names = append(names, name)
			}
		}
		return names, nil
	}
}
