package graph

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// RemoveImage removes the image ref. A ref that is one of several names of
// the image only removes that name. The image's layers that nothing else
// references any more are removed too; their ChainIDs are returned. While
// a container uses the image it fails with ErrFailedPrecondition unless
// force is set (the container then keeps its layers referenced).
func (s *Store) RemoveImage(ctx context.Context, ref string, force bool) ([]digest.Digest, error) {
	const op = "remove image"
	s.mu.Lock()
	defer s.mu.Unlock()
	var img Image
	untagged := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		img, err = resolveImage(tx, ref)
		if err != nil {
			return err
		}
		if len(img.Names) > 1 && stContainsString(img.Names, ref) {
			img.Names = stRemoveString(img.Names, ref)
			untagged = true
			if err := tx.Bucket(bucketNames).Delete([]byte(ref)); err != nil {
				return err
			}
			return stPutJSON(tx, bucketImages, string(img.ID), img)
		}
		if !force {
			var users []string
			_ = stForEachJSON(tx, bucketContainers, func(_ string, c Container) error {
				if c.Image == img.ID {
					users = append(users, c.ID)
				}
				return nil
			})
			_ = stForEachJSON(tx, bucketViews, func(_ string, v viewRecord) error {
				if v.Image == img.ID {
					users = append(users, "view at "+v.Dir)
				}
				return nil
			})
			if len(users) > 0 {
				return Errorf(ErrFailedPrecondition, op, ref, "in use by %s (force to remove anyway)", strings.Join(users, ", "))
			}
		}
		for _, n := range img.Names {
			if err := tx.Bucket(bucketNames).Delete([]byte(n)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketImages).Delete([]byte(img.ID))
	})
	if err != nil {
		return nil, Wrap(err, op, ref)
	}
	if untagged {
		return nil, nil
	}
	var removed []digest.Digest
	for i := len(img.ChainIDs) - 1; i >= 0; i-- {
		c := img.ChainIDs[i]
		if s.refs(c) > 0 {
			break // in use: so is everything below
		}
		if err := s.removeLayerLocked(ctx, c); err != nil {
			return removed, Wrap(err, op, ref)
		}
		removed = append(removed, c)
	}
	return removed, nil
}

// refs counts the references to layer c, pins included. Call with s.mu held.
func (s *Store) refs(c digest.Digest) int {
	n := s.pins[string(c)]
	_ = s.db.View(func(tx *bolt.Tx) error {
		n += refCounts(tx)[string(c)]
		return nil
	})
	return n
}

// RemoveLayer removes the layer ref (a ChainID or unique prefix). It fails
// with ErrFailedPrecondition while an image, a child layer, a container or
// a mounted view references it.
func (s *Store) RemoveLayer(ctx context.Context, ref string) error {
	const op = "remove layer"
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.Layer(ctx, ref)
	if err != nil {
		return err
	}
	if users := s.layerUsers(l.ChainID); len(users) > 0 {
		return Errorf(ErrFailedPrecondition, op, string(l.ChainID), "in use by %s", strings.Join(users, ", "))
	}
	return Wrap(s.removeLayerLocked(ctx, l.ChainID), op, string(l.ChainID))
}

// layerUsers names what references layer c. Call with s.mu held.
func (s *Store) layerUsers(c digest.Digest) []string {
	var users []string
	if s.pins[string(c)] > 0 {
		users = append(users, "an operation in progress")
	}
	_ = s.db.View(func(tx *bolt.Tx) error {
		_ = stForEachJSON(tx, bucketImages, func(_ string, img Image) error {
			if img.TopLayer() == c {
				users = append(users, "image "+imageLabel(img))
			}
			return nil
		})
		_ = stForEachJSON(tx, bucketLayers, func(_ string, l Layer) error {
			if l.Parent == c {
				users = append(users, "layer "+string(l.ChainID))
			}
			return nil
		})
		_ = stForEachJSON(tx, bucketContainers, func(_ string, ct Container) error {
			if ct.Layer == c {
				users = append(users, "container "+ct.ID)
			}
			return nil
		})
		_ = stForEachJSON(tx, bucketViews, func(_ string, v viewRecord) error {
			if v.Layer == c {
				users = append(users, "view at "+v.Dir)
			}
			return nil
		})
		return nil
	})
	return users
}

// imageLabel names an image in messages.
func imageLabel(img Image) string {
	if len(img.Names) > 0 {
		return img.Names[0]
	}
	return fmt.Sprint(img.ID)
}

// removeLayerLocked removes the record, the snapshot and the tar-split data
// of layer c, which nothing references. The record goes first: a crash
// after it leaves an unrecorded snapshot, which the next OpenStore removes.
func (s *Store) removeLayerLocked(ctx context.Context, c digest.Digest) error {
	var rec []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLayers)
		rec = append([]byte(nil), b.Get([]byte(c))...)
		return b.Delete([]byte(c))
	})
	if err != nil {
		return err
	}
	if err := s.d.Remove(ctx, string(c)); err != nil && !errors.Is(err, ErrNotFound) {
		if rec != nil {
			_ = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLayers).Put([]byte(c), rec) })
		}
		return err
	}
	return os.RemoveAll(filepath.Dir(s.tarSplitPath(c)))
}

// Prune removes every layer that no image, container, view or child layer
// references, until none is left, and returns their ChainIDs.
func (s *Store) Prune(ctx context.Context) ([]digest.Digest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var removed []digest.Digest
	for {
		var unused []digest.Digest
		err := s.db.View(func(tx *bolt.Tx) error {
			refs := refCounts(tx)
			return stForEachJSON(tx, bucketLayers, func(k string, l Layer) error {
				if refs[k] == 0 && s.pins[k] == 0 {
					unused = append(unused, l.ChainID)
				}
				return nil
			})
		})
		if err != nil {
			return removed, Wrap(err, "prune", s.root)
		}
		if len(unused) == 0 {
			break
		}
		sort.Slice(unused, func(i, j int) bool { return unused[i] < unused[j] })
		for _, c := range unused {
			if err := ctx.Err(); err != nil {
				return removed, Wrap(err, "prune", s.root)
			}
			if err := s.removeLayerLocked(ctx, c); err != nil {
				return removed, Wrap(err, "prune", string(c))
			}
			removed = append(removed, c)
		}
	}
	return removed, nil
}
