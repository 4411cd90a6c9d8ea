package graph

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// viewRecord is an image view mounted at a directory for inspection.
type viewRecord struct {
	Dir     string        `json:"dir"`
	Key     string        `json:"key"` // the driver's snapshot key
	Image   digest.Digest `json:"image"`
	Layer   digest.Digest `json:"layer"`
	Created time.Time     `json:"created"`
}

// ImageMount is an image view mounted by MountImage.
type ImageMount struct {
	Dir   string        `json:"dir"`
	Image digest.Digest `json:"image"`
	Key   string        `json:"key"`
}

// MountImage mounts a read-only view of the root filesystem of image ref
// at dir (an existing directory) and records it, so that UnmountImage(dir)
// unmounts and removes it. The view keeps the image's layers referenced.
func (s *Store) MountImage(ctx context.Context, ref, dir string) error {
	const op = "mount image"
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Wrap(err, op, dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Errorf(ErrNotFound, op, dir, "no such directory")
		}
		return Wrap(err, op, dir)
	}
	if !fi.IsDir() {
		return Errorf(ErrInvalidArgument, op, dir, "not a directory")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.Image(ctx, ref)
	if err != nil {
		return err
	}
	if _, err := s.imageMount(dir); err == nil {
		return Errorf(ErrAlreadyExists, op, dir, "an image is already mounted there")
	}
	key := stRandomKey("view-")
	mounts, err := s.d.View(ctx, key, string(img.TopLayer()), WithLabels(map[string]string{LabelView: dir}))
	if err != nil {
		return Wrap(err, op, ref)
	}
	if err := MountAll(withoutSuidOrDev(mounts), dir); err != nil {
		_ = s.d.Remove(context.WithoutCancel(ctx), key)
		return Wrap(err, op, dir)
	}
	rec := viewRecord{Dir: dir, Key: key, Image: img.ID, Layer: img.TopLayer(), Created: time.Now().UTC()}
	err = s.db.Update(func(tx *bolt.Tx) error { return stPutJSON(tx, bucketViews, dir, rec) })
	if err != nil {
		_ = UnmountAll(dir)
		_ = s.d.Remove(context.WithoutCancel(ctx), key)
		return Wrap(err, op, dir)
	}
	return nil
}

// withoutSuidOrDev returns mounts with nosuid and nodev added: an image
// view is for looking at an image's files in a directory the caller
// chose, where the image's set-user-ID programs and device nodes must
// not work (a container's root file system is mounted without them).
func withoutSuidOrDev(mounts []Mount) []Mount {
	out := make([]Mount, len(mounts))
	for i, m := range mounts {
		m.Options = append(slices.Clone(m.Options), "nosuid", "nodev")
		out[i] = m
	}
	return out
}

// imageMount returns the view recorded at dir (absolute).
func (s *Store) imageMount(dir string) (viewRecord, error) {
	var rec viewRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		ok, err := stGetJSON(tx, bucketViews, dir, &rec)
		if err == nil && !ok {
			err = Errorf(ErrNotFound, "image mount", dir, "no image is mounted there")
		}
		return err
	})
	return rec, err
}

// UnmountImage unmounts the image view MountImage mounted at dir and
// removes it.
func (s *Store) UnmountImage(ctx context.Context, dir string) error {
	const op = "unmount image"
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Wrap(err, op, dir)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.imageMount(dir)
	if err != nil {
		return err
	}
	if err := UnmountAll(dir); err != nil {
		return Wrap(err, op, dir)
	}
	if err := s.d.Remove(ctx, rec.Key); err != nil && !errors.Is(err, ErrNotFound) {
		return Wrap(err, op, dir)
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketViews).Delete([]byte(dir)) })
	return Wrap(err, op, dir)
}

// ImageMounts lists the image views mounted by MountImage, by directory.
func (s *Store) ImageMounts(ctx context.Context) ([]ImageMount, error) {
	var out []ImageMount
	err := s.db.View(func(tx *bolt.Tx) error {
		return stForEachJSON(tx, bucketViews, func(_ string, v viewRecord) error {
			out = append(out, ImageMount{Dir: v.Dir, Image: v.Image, Key: v.Key})
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, Wrap(err, "list image mounts", s.root)
}
