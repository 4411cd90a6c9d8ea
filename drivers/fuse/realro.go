package fuse

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/unionstack/unionstack/graph/archive"
)

// A committed layer without any whiteout or opaque marker is mounted as
// an aufs "rr" (real read-only) branch rather than "ro": unionfs then
// looks for no whiteouts in it, which takes two of the three lookups per
// branch off every name resolved through the stack (most image layers
// delete nothing). Commit finds out, once, and leaves a marker file
// beside the layer's fs directory; a layer without the marker (older, or
// with whiteouts) stays "ro", which is always right.

// noWhiteoutsMarker is the file beside fs/ that says fs/ holds no
// whiteouts.
const noWhiteoutsMarker = "no-whiteouts"

// realROCache remembers, per committed snapshot id, whether its layer may
// be mounted rr (committed layers never change).
type realROCache struct {
	mu  sync.Mutex
	ids map[string]bool
}

// isRealRO reports whether committed snapshot id may be mounted rr.
func (b *backend) isRealRO(id string) bool {
	b.rr.mu.Lock()
	rr, ok := b.rr.ids[id]
	b.rr.mu.Unlock()
	if ok {
		return rr
	}
	_, err := os.Lstat(filepath.Join(b.dir(id), noWhiteoutsMarker))
	rr = err == nil
	b.rr.mu.Lock()
	if b.rr.ids == nil {
		b.rr.ids = map[string]bool{}
	}
	b.rr.ids[id] = rr
	b.rr.mu.Unlock()
	return rr
}

// forgetRealRO drops id from the cache (the snapshot is removed).
func (b *backend) forgetRealRO(id string) {
	b.rr.mu.Lock()
	delete(b.rr.ids, id)
	b.rr.mu.Unlock()
}

// markRealRO leaves the marker for snapshot id when its layer holds no
// whiteout or opaque marker. A marker from an earlier commit of the same
// snapshot (undone, then changed) is removed first, so a stale one never
// survives; when the scan or the new marker fails, the layer simply
// stays "ro", which is always right.
func (b *backend) markRealRO(id string) error {
	marker := filepath.Join(b.dir(id), noWhiteoutsMarker)
	b.forgetRealRO(id)
	if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", marker, err)
	}
	if found, err := hasWhiteouts(b.fsDir(id)); err != nil || found {
		return nil
	}
	if f, err := os.OpenFile(marker, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		f.Close()
	}
	return nil
}

// hasWhiteouts reports whether the tree at dir holds a whiteout or an
// opaque marker anywhere. The union's own entries (".wh..wh.*" but the
// opaque marker: its work directory, its link index) hide nothing and
// do not count. It reads directories only (no stat per file).
func hasWhiteouts(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, archive.WhiteoutMetaPrefix) && name != archive.WhiteoutOpaque {
			continue
		}
		if strings.HasPrefix(name, archive.WhiteoutPrefix) {
			return true, nil
		}
		if e.IsDir() {
			found, err := hasWhiteouts(filepath.Join(dir, e.Name()))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil || found {
				return found, err
			}
		}
	}
	return false, nil
}
