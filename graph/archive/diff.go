package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// differ walks upper against lower and writes what changed.
type differ struct {
	ctx          context.Context
	lower, upper string
	lw           *layerWriter
	pending      []pendingDir // ancestors not yet written
}

type pendingDir struct {
	rel     string
	st      *unix.Stat_t
	written bool
}

func diffTrees(ctx context.Context, lower, upper string, w io.Writer) (digest.Digest, error) {
	d := &differ{ctx: ctx, lower: lower, upper: upper, lw: newLayerWriter(w)}
	lowerIsDir := false
	if lower != "" {
		st, err := lstat(lower)
		if err != nil {
			return "", fmt.Errorf("diff %s: lower: %w", upper, err)
		}
		lowerIsDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	if err := d.dir("", lowerIsDir); err != nil {
		return "", fmt.Errorf("diff %s: %w", upper, err)
	}
	dgst, err := d.lw.close()
	if err != nil {
		return "", fmt.Errorf("diff %s: %w", upper, err)
	}
	return dgst, nil
}

// item is one name of a directory listing: an entry of upper or a
// whiteout for an entry only lower has.
type item struct {
	name     string
	whiteout bool
}

func (d *differ) dir(rel string, lowerIsDir bool) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	unames, err := sortedNames(joinPath(d.upper, rel))
	if err != nil {
		return err
	}
	items := make([]item, 0, len(unames))
	in := make(map[string]bool, len(unames))
	for _, n := range unames {
		items = append(items, item{name: n})
		in[n] = true
	}
	if lowerIsDir {
		lnames, err := sortedNames(joinPath(d.lower, rel))
		if err != nil {
			return err
		}
		for _, n := range lnames {
			if !in[n] {
				items = append(items, item{name: WhiteoutPrefix + n, whiteout: true})
			}
		}
		sort.Slice(items, func(i, j int) bool { return items[i].name < items[j].name })
	}
	for _, it := range items {
		child := joinRel(rel, it.name)
		if it.whiteout {
			if err := d.flushPending(); err != nil {
				return err
			}
			if err := d.lw.whiteout(child); err != nil {
				return fmt.Errorf("%s: %w", child, err)
			}
			continue
		}
		ust, err := lstat(joinPath(d.upper, child))
		if err != nil {
			return err
		}
		var lst *unix.Stat_t
		if lowerIsDir {
			lst, err = lstat(joinPath(d.lower, child))
			if err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
		}
		changed := lst == nil
		if !changed {
			if changed, err = d.differs(child, ust, lst); err != nil {
				return fmt.Errorf("%s: %w", child, err)
			}
		}
		isDir := ust.Mode&unix.S_IFMT == unix.S_IFDIR
		if changed {
			if err := d.flushPending(); err != nil {
				return err
			}
			if err := d.lw.add(d.upper, child, ust); err != nil {
				return fmt.Errorf("%s: %w", child, err)
			}
		}
		if isDir {
			d.pending = append(d.pending, pendingDir{rel: child, st: ust, written: changed})
			err := d.dir(child, lst != nil && lst.Mode&unix.S_IFMT == unix.S_IFDIR)
			d.pending = d.pending[:len(d.pending)-1]
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// flushPending writes the ancestors of the entry about to be written.
func (d *differ) flushPending() error {
	for i := range d.pending {
		p := &d.pending[i]
		if p.written {
			continue
		}
		if err := d.lw.add(d.upper, p.rel, p.st); err != nil {
			return fmt.Errorf("%s: %w", p.rel, err)
		}
		p.written = true
	}
	return nil
}

// differs compares metadata only: type, mode, owner, size, mtime, device
// number, symlink target and xattrs. Contents are not read.
func (d *differ) differs(rel string, u, l *unix.Stat_t) (bool, error) {
	if u.Mode != l.Mode || u.Uid != l.Uid || u.Gid != l.Gid || u.Mtim != l.Mtim {
		return true, nil
	}
	switch u.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if u.Size != l.Size {
			return true, nil
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if u.Rdev != l.Rdev {
			return true, nil
		}
	case unix.S_IFLNK:
		ut, err := os.Readlink(joinPath(d.upper, rel))
		if err != nil {
			return false, err
		}
		lt, err := os.Readlink(joinPath(d.lower, rel))
		if err != nil {
			return false, err
		}
		if ut != lt {
			return true, nil
		}
	}
	ux, err := listXattrs(joinPath(d.upper, rel))
	if err != nil {
		return false, err
	}
	lx, err := listXattrs(joinPath(d.lower, rel))
	if err != nil {
		return false, err
	}
	if len(ux) != len(lx) {
		return true, nil
	}
	for k, v := range ux {
		if w, ok := lx[k]; !ok || !bytes.Equal(v, w) {
			return true, nil
		}
	}
	return false, nil
}

func joinPath(root, rel string) string {
	if rel == "" {
		return root
	}
	return root + "/" + rel
}
