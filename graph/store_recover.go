package graph

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/unionstack/unionstack/internal/mountinfo"
)

// recover removes what an interrupted operation left behind, so that only
// complete layers, images and containers are visible:
//   - active snapshots an import was unpacking into (LabelUnpack) and views
//     of exports and diffs (LabelExport);
//   - container snapshots and image views without a record, and records
//     whose snapshot is gone;
//   - committed layer snapshots (LabelLayer) without a layer record;
//   - tar-split data without a layer record, and scratch files.
func (s *Store) recover(ctx context.Context) error {
	var stale, layerSnaps []string
	containerSnaps := map[string]bool{}
	viewSnaps := map[string]bool{}
	err := s.d.Walk(ctx, func(ctx context.Context, info Info) error {
		has := func(l string) bool { _, ok := info.Labels[l]; return ok }
		switch {
		case has(LabelUnpack), has(LabelExport):
			stale = append(stale, info.Name)
		case has(LabelContainer):
			containerSnaps[info.Name] = true
		case has(LabelView):
			viewSnaps[info.Name] = true
		case has(LabelLayer) && info.Kind == KindCommitted:
			layerSnaps = append(layerSnaps, info.Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, key := range stale {
		if err := s.d.Remove(ctx, key); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}

	var layerRecs, containerKeys, viewKeys = map[string]bool{}, map[string]bool{}, map[string]bool{}
	var deadContainers, deadViews []string
	err = s.db.View(func(tx *bolt.Tx) error {
		_ = stForEachJSON(tx, bucketLayers, func(k string, _ Layer) error {
			layerRecs[k] = true
			return nil
		})
		_ = stForEachJSON(tx, bucketContainers, func(k string, c Container) error {
			containerKeys[c.Key] = true
			if !containerSnaps[c.Key] {
				deadContainers = append(deadContainers, k)
			}
			return nil
		})
		return stForEachJSON(tx, bucketViews, func(k string, v viewRecord) error {
			viewKeys[v.Key] = true
			if !viewSnaps[v.Key] {
				deadViews = append(deadViews, k)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if len(deadContainers)+len(deadViews) > 0 {
		err = s.db.Update(func(tx *bolt.Tx) error {
			for _, k := range deadContainers {
				if err := tx.Bucket(bucketContainers).Delete([]byte(k)); err != nil {
					return err
				}
			}
			for _, k := range deadViews {
				if err := tx.Bucket(bucketViews).Delete([]byte(k)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for key := range containerSnaps {
		if !containerKeys[key] {
			if err := s.d.Remove(ctx, key); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
	}
	for key := range viewSnaps {
		if !viewKeys[key] {
			if err := s.d.Remove(ctx, key); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
	}

	// Unrecorded layers, children first: retry while that makes progress.
	var orphans []string
	for _, k := range layerSnaps {
		if !layerRecs[k] {
			orphans = append(orphans, k)
		}
	}
	for len(orphans) > 0 {
		var left []string
		var lastErr error
		for _, k := range orphans {
			if err := s.d.Remove(ctx, k); err != nil && !errors.Is(err, ErrNotFound) {
				left = append(left, k)
				lastErr = err
			}
		}
		if len(left) == len(orphans) {
			return lastErr
		}
		orphans = left
	}

	entries, err := os.ReadDir(filepath.Join(s.root, "layers"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !layerRecs[string(digest.NewDigestFromEncoded(digest.SHA256, e.Name()))] {
			if err := os.RemoveAll(filepath.Join(s.root, "layers", e.Name())); err != nil {
				return err
			}
		}
	}
	return s.cleanTmp()
}

// cleanTmp empties ROOT/tmp, unmounting scratch mounts a crash left there
// first, and leaving alone anything still mounted.
func (s *Store) cleanTmp() error {
	tmp := filepath.Join(s.root, "tmp")
	mounted := storeMountPointsUnder(tmp)
	for _, m := range mounted {
		_ = UnmountAll(m)
	}
	mounted = storeMountPointsUnder(tmp)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(tmp, e.Name())
		busy := false
		for _, m := range mounted {
			if m == p || strings.HasPrefix(m, p+"/") {
				busy = true
			}
		}
		if !busy {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// storeMountPointsUnder lists the mount points at or below dir.
func storeMountPointsUnder(dir string) []string {
	all, err := mountinfo.Read(0)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range mountinfo.Under(all, dir) {
		out = append(out, e.MountPoint)
	}
	return out
}
