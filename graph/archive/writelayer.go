package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ErrOverlayFeature is returned by WriteLayer for an overlay upper dir that
// uses redirect_dir or metacopy, whose content is not in the dir alone.
var ErrOverlayFeature = errors.New("overlay layer uses redirect or metacopy")

func writeLayer(ctx context.Context, dir string, f Format, w io.Writer) (digest.Digest, error) {
	if f != FormatAUFS && f != FormatOverlay && f != FormatOverlayUser {
		return "", fmt.Errorf("write layer %s: format %s has no whiteouts to export", dir, f)
	}
	lw := newLayerWriter(w)
	x := &layerExporter{ctx: ctx, dir: dir, f: f, lw: lw}
	if err := x.walk(""); err != nil {
		return "", fmt.Errorf("write layer %s: %w", dir, err)
	}
	dgst, err := lw.close()
	if err != nil {
		return "", fmt.Errorf("write layer %s: %w", dir, err)
	}
	return dgst, nil
}

type layerExporter struct {
	ctx context.Context
	dir string
	f   Format
	lw  *layerWriter
}

func (x *layerExporter) xattrPrefix() string {
	if x.f == FormatOverlayUser {
		return "user.overlay."
	}
	return "trusted.overlay."
}

func (x *layerExporter) walk(rel string) error {
	if err := x.ctx.Err(); err != nil {
		return err
	}
	full := joinPath(x.dir, rel)
	names, err := sortedNames(full)
	if err != nil {
		return err
	}
	opaque := false
	if x.f == FormatAUFS {
		for _, n := range names {
			opaque = opaque || n == WhiteoutOpaque
		}
	} else {
		v, err := getXattr(full, x.xattrPrefix()+"opaque")
		opaque = err == nil && string(v) == "y"
	}
	if opaque {
		if err := x.lw.whiteout(joinRel(rel, WhiteoutOpaque)); err != nil {
			return err
		}
	}
	type item struct {
		name, out string // on disk, in the tar
		st        *unix.Stat_t
		whiteout  bool
	}
	items := make([]item, 0, len(names))
	for _, n := range names {
		child := joinRel(rel, n)
		if x.f == FormatAUFS && strings.HasPrefix(n, WhiteoutMetaPrefix) {
			continue // the opaque marker (written above) or aufs metadata
		}
		st, err := lstat(joinPath(x.dir, child))
		if err != nil {
			return err
		}
		switch {
		case x.f == FormatAUFS && strings.HasPrefix(n, WhiteoutPrefix):
			items = append(items, item{name: n, out: n, st: st, whiteout: true})
		case x.f != FormatAUFS && isWhiteoutDev(st):
			items = append(items, item{name: n, out: WhiteoutPrefix + n, st: st, whiteout: true})
		default:
			items = append(items, item{name: n, out: n, st: st})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].out < items[j].out })
	for _, it := range items {
		child := joinRel(rel, it.name)
		if it.whiteout {
			if err := x.lw.whiteout(joinRel(rel, it.out)); err != nil {
				return fmt.Errorf("%s: %w", child, err)
			}
			continue
		}
		if x.f != FormatAUFS {
			for _, k := range []string{"redirect", "metacopy"} {
				if _, err := getXattr(joinPath(x.dir, child), x.xattrPrefix()+k); err == nil {
					return fmt.Errorf("%s: %w (%s%s)", child, ErrOverlayFeature, x.xattrPrefix(), k)
				}
			}
		}
		if err := x.lw.add(x.dir, child, it.st); err != nil {
			return fmt.Errorf("%s: %w", child, err)
		}
		if it.st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := x.walk(child); err != nil {
				return err
			}
		}
	}
	return nil
}
