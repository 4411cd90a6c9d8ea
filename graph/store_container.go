package graph

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/unionstack/unionstack/graph/archive"
)

// containerKey is the driver's snapshot key of container id.
func containerKey(id string) string { return "container-" + id }

// validContainerID checks that id can name a container.
func validContainerID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, "/\\ \t\n\x00") || id == "." || id == ".." {
		return Errorf(ErrInvalidArgument, "container", id, "container ids are 1-128 characters without slashes or spaces")
	}
	return nil
}

// CreateContainer creates container id: an active snapshot on the top layer
// of the image ref, which it keeps referenced. It returns the mounts of the
// container's root filesystem.
func (s *Store) CreateContainer(ctx context.Context, id, image string) ([]Mount, error) {
	const op = "create container"
	if err := validContainerID(id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.Image(ctx, image)
	if err != nil {
		return nil, Wrap(err, op, id)
	}
	if _, err := s.Container(ctx, id); err == nil {
		return nil, Errorf(ErrAlreadyExists, op, id, "container exists")
	}
	key := containerKey(id)
	mounts, err := s.d.Prepare(ctx, key, string(img.TopLayer()), WithLabels(map[string]string{LabelContainer: id}))
	if err != nil {
		return nil, Wrap(err, op, id)
	}
	c := Container{ID: id, Image: img.ID, Layer: img.TopLayer(), Key: key, Created: time.Now().UTC()}
	err = s.db.Update(func(tx *bolt.Tx) error { return stPutJSON(tx, bucketContainers, id, c) })
	if err != nil {
		_ = s.d.Remove(context.WithoutCancel(ctx), key)
		return nil, Wrap(err, op, id)
	}
	return mounts, nil
}

// Container returns the container id.
func (s *Store) Container(ctx context.Context, id string) (Container, error) {
	var c Container
	err := s.db.View(func(tx *bolt.Tx) error {
		ok, err := stGetJSON(tx, bucketContainers, id, &c)
		if err == nil && !ok {
			err = Errorf(ErrNotFound, "container", id, "no such container")
		}
		return err
	})
	if err != nil {
		return Container{}, Wrap(err, "container", id)
	}
	return c, nil
}

// Containers lists the containers, sorted by id.
func (s *Store) Containers(ctx context.Context) ([]Container, error) {
	out, err := stAllJSON[Container](s.db, bucketContainers)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, Wrap(err, "list containers", s.root)
}

// ContainerMounts returns the mounts of container id's root filesystem.
func (s *Store) ContainerMounts(ctx context.Context, id string) ([]Mount, error) {
	c, err := s.Container(ctx, id)
	if err != nil {
		return nil, err
	}
	m, err := s.d.Mounts(ctx, c.Key)
	return m, Wrap(err, "container mounts", id)
}

// RemoveContainer removes container id and its snapshot (which must not be
// mounted any more), releasing its layer.
func (s *Store) RemoveContainer(ctx context.Context, id string) error {
	const op = "remove container"
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.Container(ctx, id)
	if err != nil {
		return err
	}
	if err := s.d.Remove(ctx, c.Key); err != nil && !errors.Is(err, ErrNotFound) {
		return Wrap(err, op, id)
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketContainers).Delete([]byte(id)) })
	return Wrap(err, op, id)
}

// CommitContainer makes the changes of container id a new layer on top of
// the container's layer and returns it. The container stays as it is and
// usable; the layer is a new committed snapshot, immutable, with its own
// tar-split data. The new layer is referenced by nothing yet: give it an
// image (CreateImage) before the next Prune.
func (s *Store) CommitContainer(ctx context.Context, id string) (Layer, error) {
	const op = "commit container"
	c, err := s.Container(ctx, id)
	if err != nil {
		return Layer{}, err
	}
	s.pin(c.Layer)
	defer s.unpin(c.Layer)
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "diff-*.tar")
	if err != nil {
		return Layer{}, Wrap(err, op, id)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	diffID, err := s.containerDiff(ctx, c, f)
	if err != nil {
		return Layer{}, Wrap(err, op, id)
	}
	unlock := s.lockChain(ChainID(c.Layer, diffID))
	defer unlock()
	if l, err := s.Layer(ctx, string(ChainID(c.Layer, diffID))); err == nil {
		return l, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Layer{}, Wrap(err, op, id)
	}
	l, err := s.unpackLayer(ctx, c.Layer, diffID, f, nil, layerSource{mediaType: ocispec.MediaTypeImageLayer})
	return l, Wrap(err, op, id)
}

// ContainerDiff writes the changes of container id as an uncompressed OCI
// layer tar into w and returns its DiffID.
func (s *Store) ContainerDiff(ctx context.Context, id string, w io.Writer) (digest.Digest, error) {
	const op = "container diff"
	c, err := s.Container(ctx, id)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "diff-*.tar")
	if err != nil {
		return "", Wrap(err, op, id)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	d, err := s.containerDiff(ctx, c, f)
	if err != nil {
		return "", Wrap(err, op, id)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", Wrap(err, op, id)
	}
	if _, err := io.Copy(w, f); err != nil {
		return "", Wrap(err, op, id)
	}
	return d, nil
}

// containerDiff writes the diff of container c into the empty file f:
// straight from the driver's layer directory when it has a faithful one,
// otherwise by comparing a view of the parent layer with the container.
func (s *Store) containerDiff(ctx context.Context, c Container, f *os.File) (digest.Digest, error) {
	if ld, ok := s.d.(LayerDirer); ok {
		dir, format, err := ld.LayerDir(ctx, c.Key)
		if err == nil && format != archive.FormatTree {
			d, err := archive.WriteLayer(ctx, dir, format, f)
			if err == nil {
				return d, nil
			}
			if !errors.Is(err, ErrNotSupported) {
				return "", err
			}
		}
		if err := stTruncate(f); err != nil {
			return "", err
		}
	}
	upper, err := s.d.Mounts(ctx, c.Key)
	if err != nil {
		return "", err
	}
	var lower []Mount
	if c.Layer != "" {
		key := stRandomKey("export-")
		lower, err = s.d.View(ctx, key, string(c.Layer), WithLabels(map[string]string{LabelExport: string(c.Layer)}))
		if err != nil {
			return "", err
		}
		defer s.d.Remove(context.WithoutCancel(ctx), key)
	}
	var d digest.Digest
	err = s.withTree(upper, "upper-", func(upperRoot string) error {
		if lower == nil {
			d, err = archive.Diff(ctx, "", upperRoot, f)
			return err
		}
		return s.withTree(lower, "lower-", func(lowerRoot string) error {
			d, err = archive.Diff(ctx, lowerRoot, upperRoot, f)
			return err
		})
	})
	return d, err
}

// stTruncate empties f and rewinds it.
func stTruncate(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// CreateImage records an image named name (optional) made of the layer
// chain topped by chainID, with config as its config; config's
// rootfs.diff_ids are set from the chain. It is how a committed container
// layer becomes an image. It returns the image.
func (s *Store) CreateImage(ctx context.Context, name string, chainID digest.Digest, config ocispec.Image) (Image, error) {
	const op = "create image"
	var diffIDs []digest.Digest
	for c := chainID; c != ""; {
		l, err := s.Layer(ctx, string(c))
		if err != nil {
			return Image{}, Wrap(err, op, string(chainID))
		}
		diffIDs = append([]digest.Digest{l.DiffID}, diffIDs...)
		c = l.Parent
	}
	if diffIDs == nil {
		diffIDs = []digest.Digest{}
	}
	config.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}
	if config.OS == "" {
		config.OS = "linux"
	}
	if config.Architecture == "" {
		config.Architecture = runtime.GOARCH
	}
	data, err := json.Marshal(config)
	if err != nil {
		return Image{}, Wrap(err, op, name)
	}
	var names []string
	if name != "" {
		names = []string{name}
	}
	return s.recordImage(data, ocispec.MediaTypeImageConfig, diffIDs, names)
}
