package graph

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// OCIConfig parses the image's config JSON.
func (img Image) OCIConfig() (ocispec.Image, error) {
	var cfg ocispec.Image
	if err := json.Unmarshal(img.Config, &cfg); err != nil {
		return ocispec.Image{}, Errorf(ErrInvalidArgument, "parse image config", string(img.ID), "%v", err)
	}
	return cfg, nil
}

// ImageConfig returns the run-time part of the image's config: entrypoint,
// cmd, env, working directory, user, and the rest.
func (img Image) ImageConfig() (ocispec.ImageConfig, error) {
	cfg, err := img.OCIConfig()
	return cfg.Config, err
}

// Image returns the image ref names: a name ("busybox:latest", or
// "busybox" meaning "busybox:latest"), an image id ("sha256:HEX"), its hex,
// or a unique prefix of the hex of at least 4 digits.
func (s *Store) Image(ctx context.Context, ref string) (Image, error) {
	var img Image
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		img, err = resolveImage(tx, ref)
		return err
	})
	if err != nil {
		return Image{}, err // names the ref already
	}
	return img, nil
}

// Images lists every image, sorted by first name, then id.
func (s *Store) Images(ctx context.Context) ([]Image, error) {
	out, err := stAllJSON[Image](s.db, bucketImages)
	if err != nil {
		return nil, Wrap(err, "list images", s.root)
	}
	sort.Slice(out, func(i, j int) bool {
		ni, nj := firstName(out[i]), firstName(out[j])
		if ni != nj {
			return ni < nj
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// ImageLayers returns the layers of the image ref, base first.
func (s *Store) ImageLayers(ctx context.Context, ref string) ([]Layer, error) {
	img, err := s.Image(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := make([]Layer, 0, len(img.ChainIDs))
	for _, c := range img.ChainIDs {
		l, err := s.Layer(ctx, string(c))
		if err != nil {
			return nil, Wrap(err, "image layers", ref)
		}
		out = append(out, l)
	}
	return out, nil
}

// firstName is the name an image sorts by ("~" sorts nameless ones last).
func firstName(img Image) string {
	if len(img.Names) == 0 {
		return "~"
	}
	return img.Names[0]
}

// resolveImage finds the image ref names within tx.
func resolveImage(tx *bolt.Tx, ref string) (Image, error) {
	var img Image
	get := func(id string) (bool, error) { return stGetJSON(tx, bucketImages, id, &img) }
	if ref == "" {
		return Image{}, Errorf(ErrInvalidArgument, "image", ref, "empty image reference")
	}
	names := tx.Bucket(bucketNames)
	for _, n := range []string{ref, ref + ":latest"} {
		if id := names.Get([]byte(n)); id != nil {
			if ok, err := get(string(id)); ok || err != nil {
				return img, err
			}
		}
	}
	hexRef := strings.TrimPrefix(ref, "sha256:")
	if ok, err := get("sha256:" + hexRef); ok || err != nil {
		return img, err
	}
	if len(hexRef) >= 4 && stIsHex(hexRef) {
		var found []string
		c := tx.Bucket(bucketImages).Cursor()
		prefix := "sha256:" + hexRef
		for k, _ := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, _ = c.Next() {
			found = append(found, string(k))
		}
		switch len(found) {
		case 1:
			_, err := get(found[0])
			return img, err
		case 0:
		default:
			return Image{}, Errorf(ErrInvalidArgument, "image", ref, "ambiguous: matches %d images", len(found))
		}
	}
	return Image{}, Errorf(ErrNotFound, "image", ref, "no such image")
}

// recordImage stores an image whose layers are all recorded, or adds names
// to it if it exists. A name moves from the image that had it.
func (s *Store) recordImage(config []byte, mediaType string, diffIDs []digest.Digest, names []string) (Image, error) {
	id := digest.FromBytes(config)
	var img Image
	err := s.db.Update(func(tx *bolt.Tx) error {
		chainIDs := ChainIDs(diffIDs)
		for _, c := range chainIDs {
			if tx.Bucket(bucketLayers).Get([]byte(c)) == nil {
				return Errorf(ErrNotFound, "record image", string(id), "layer %s was removed meanwhile", c)
			}
		}
		ok, err := stGetJSON(tx, bucketImages, string(id), &img)
		if err != nil {
			return err
		}
		if !ok {
			img = Image{ID: id, Config: config, ConfigMediaType: mediaType, DiffIDs: diffIDs, ChainIDs: chainIDs, Created: time.Now().UTC()}
		}
		for _, n := range names {
			if err := setName(tx, n, &img); err != nil {
				return err
			}
		}
		return stPutJSON(tx, bucketImages, string(id), img)
	})
	if err != nil {
		return Image{}, Wrap(err, "record image", string(id))
	}
	return img, nil
}

// setName points name at img, taking it away from any other image.
func setName(tx *bolt.Tx, name string, img *Image) error {
	if err := validName(name); err != nil {
		return err
	}
	names := tx.Bucket(bucketNames)
	if old := names.Get([]byte(name)); old != nil && string(old) != string(img.ID) {
		var other Image
		if ok, err := stGetJSON(tx, bucketImages, string(old), &other); err != nil {
			return err
		} else if ok {
			other.Names = stRemoveString(other.Names, name)
			if err := stPutJSON(tx, bucketImages, string(other.ID), other); err != nil {
				return err
			}
		}
	}
	if !stContainsString(img.Names, name) {
		img.Names = append(img.Names, name)
	}
	return names.Put([]byte(name), []byte(img.ID))
}

// validName checks that an image name can be stored and found again.
func validName(name string) error {
	if name == "" || strings.ContainsAny(name, " \t\n\x00") {
		return Errorf(ErrInvalidArgument, "name image", name, "image names must be non-empty without spaces")
	}
	if strings.HasPrefix(name, "sha256:") {
		return Errorf(ErrInvalidArgument, "name image", name, "an image name cannot look like an image id")
	}
	return nil
}

// TagImage adds name to the image ref, taking it from any other image.
func (s *Store) TagImage(ctx context.Context, ref, name string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		img, err := resolveImage(tx, ref)
		if err != nil {
			return err
		}
		if err := setName(tx, name, &img); err != nil {
			return err
		}
		return stPutJSON(tx, bucketImages, string(img.ID), img)
	})
	return Wrap(err, "tag image", ref)
}

func stContainsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func stRemoveString(list []string, s string) []string {
	out := list[:0:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
