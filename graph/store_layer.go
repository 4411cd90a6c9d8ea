package graph

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/unionstack/unionstack/graph/archive"
)

// layerSource describes the blob a layer is unpacked from.
type layerSource struct {
	compressedDigest digest.Digest
	compressedSize   int64
	mediaType        string
}

// unpackLayer unpacks the layer stream r (plain, gzip or zstd) on top of
// the layer parent ("" for a base layer) and records it as a layer. When
// want is not "", the layer's DiffID must equal it. check, when not nil, is
// called after r has been read to its end and before anything is
// committed (it verifies the blob's digest). On any error nothing is left
// behind: the active snapshot is removed.
func (s *Store) unpackLayer(ctx context.Context, parent, want digest.Digest, r io.Reader, check func() error, src layerSource) (Layer, error) {
	const op = "unpack layer"
	name := string(want)
	if name == "" {
		name = "on " + string(parent)
	}
	depth := 1
	if parent != "" {
		pl, err := s.Layer(ctx, string(parent))
		if err != nil {
			return Layer{}, Wrap(err, op, name)
		}
		depth = pl.Depth + 1
	}
	if depth > s.maxDepth {
		return Layer{}, Errorf(ErrNotSupported, op, name, "layer would be %d deep, more than the store's depth limit of %d", depth, s.maxDepth)
	}

	key := stRandomKey("unpack-")
	mounts, err := s.d.Prepare(ctx, key, string(parent), WithLabels(map[string]string{LabelUnpack: time.Now().UTC().Format(time.RFC3339)}))
	if err != nil {
		return Layer{}, Wrap(err, op, name)
	}
	done := false
	committed := digest.Digest("")
	defer func() {
		if done {
			return
		}
		cctx := context.WithoutCancel(ctx)
		if committed != "" {
			_ = s.d.Remove(cctx, string(committed))
		} else {
			_ = s.d.Remove(cctx, key)
		}
	}()

	ts, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "tar-split-*.json.gz")
	if err != nil {
		return Layer{}, Wrap(err, op, name)
	}
	defer func() {
		ts.Close()
		if !done {
			os.Remove(ts.Name())
		}
	}()
	gz := gzip.NewWriter(ts)
	res, err := s.applyLayer(ctx, key, mounts, r, gz)
	if err != nil {
		// A blob that is not what its digest says explains the failure
		// better than what the unpacker tripped over.
		if check != nil && ctx.Err() == nil {
			if _, cerr := io.Copy(io.Discard, r); cerr == nil {
				if cerr := check(); cerr != nil {
					return Layer{}, Wrap(fmt.Errorf("%w (unpacking failed: %v)", cerr, err), op, name)
				}
			}
		}
		return Layer{}, Wrap(err, op, name)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return Layer{}, Wrap(err, op, name)
	}
	if check != nil {
		if err := check(); err != nil {
			return Layer{}, Wrap(err, op, name)
		}
	}
	if want != "" && res.DiffID != want {
		return Layer{}, Errorf(ErrInvalidArgument, op, name, "layer content has DiffID %s, the image config says %s", res.DiffID, want)
	}
	if err := gz.Close(); err != nil {
		return Layer{}, Wrap(err, op, name)
	}
	if err := ts.Sync(); err != nil {
		return Layer{}, Wrap(err, op, name)
	}

	chainID := ChainID(parent, res.DiffID)
	err = s.d.Commit(ctx, string(chainID), key, WithLabels(map[string]string{LabelLayer: string(res.DiffID)}))
	if errors.Is(err, ErrAlreadyExists) {
		// Another import committed the same layer meanwhile: use it.
		if l, lerr := s.Layer(ctx, string(chainID)); lerr == nil {
			return l, nil // the deferred cleanup removes our snapshot
		}
	}
	if err != nil {
		return Layer{}, Wrap(err, op, string(chainID))
	}
	committed = chainID

	tsPath := s.tarSplitPath(chainID)
	if err := os.MkdirAll(filepath.Dir(tsPath), 0o700); err != nil {
		return Layer{}, Wrap(err, op, string(chainID))
	}
	if err := os.Rename(ts.Name(), tsPath); err != nil {
		return Layer{}, Wrap(err, op, string(chainID))
	}
	stSyncDir(filepath.Dir(tsPath))

	l := Layer{
		ChainID:          chainID,
		DiffID:           res.DiffID,
		Parent:           parent,
		Depth:            depth,
		Size:             res.Size,
		CompressedDigest: src.compressedDigest,
		CompressedSize:   src.compressedSize,
		MediaType:        src.mediaType,
		Created:          time.Now().UTC(),
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if parent != "" && tx.Bucket(bucketLayers).Get([]byte(parent)) == nil {
			return Errorf(ErrNotFound, op, string(parent), "parent layer was removed meanwhile")
		}
		return stPutJSON(tx, bucketLayers, string(chainID), l)
	})
	if err != nil {
		os.RemoveAll(filepath.Dir(tsPath))
		return Layer{}, Wrap(err, op, string(chainID))
	}
	done = true
	return l, nil
}

// applyLayer unpacks r into the active snapshot key: straight into the
// driver's layer directory when the driver offers one in an aufs or overlay
// whiteout form, otherwise into the mounted tree.
func (s *Store) applyLayer(ctx context.Context, key string, mounts []Mount, r io.Reader, tarSplit io.Writer) (archive.ApplyResult, error) {
	if ld, ok := s.d.(LayerDirer); ok {
		dir, f, err := ld.LayerDir(ctx, key)
		if err == nil && (f == archive.FormatAUFS || f == archive.FormatOverlay || f == archive.FormatOverlayUser) {
			parents, err := ld.ParentLayerDirs(ctx, key)
			if err != nil {
				return archive.ApplyResult{}, err
			}
			return archive.Apply(ctx, dir, r, archive.ApplyOptions{Format: f, Parents: parents, TarSplit: tarSplit})
		}
	}
	var res archive.ApplyResult
	err := s.withTree(mounts, "apply-", func(root string) error {
		var err error
		res, err = archive.Apply(ctx, root, r, archive.ApplyOptions{Format: archive.FormatTree, TarSplit: tarSplit})
		return err
	})
	return res, err
}

// withTree calls fn with a directory showing the tree of mounts. A single
// plain bind mount is used in place (its source is the tree); anything else
// is mounted on a scratch directory and unmounted afterwards.
func (s *Store) withTree(mounts []Mount, prefix string, fn func(root string) error) error {
	if len(mounts) == 1 && mounts[0].Type == "bind" && mounts[0].Target == "" {
		return fn(mounts[0].Source)
	}
	mnt, err := s.tmpDir(prefix)
	if err != nil {
		return err
	}
	if err := MountAll(mounts, mnt); err != nil {
		os.Remove(mnt)
		return err
	}
	ferr := fn(mnt)
	if err := UnmountAll(mnt); err != nil {
		// Leave the directory: removing it could reach into the mount.
		return errors.Join(ferr, err)
	}
	os.Remove(mnt)
	return ferr
}

// stSyncDir fsyncs a directory so a rename in it is durable.
func stSyncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		f.Close()
	}
}

// Layer returns the layer with the ChainID (or unique hex prefix of one) ref.
func (s *Store) Layer(ctx context.Context, ref string) (Layer, error) {
	var l Layer
	err := s.db.View(func(tx *bolt.Tx) error {
		id, err := resolveLayer(tx, ref)
		if err != nil {
			return err
		}
		if _, err := stGetJSON(tx, bucketLayers, id, &l); err != nil {
			return err
		}
		l.RefCount = refCounts(tx)[id]
		return nil
	})
	if err != nil {
		return Layer{}, err // names the ref already
	}
	return l, nil
}

// Layers lists every layer, sorted by depth, then ChainID.
func (s *Store) Layers(ctx context.Context) ([]Layer, error) {
	var out []Layer
	err := s.db.View(func(tx *bolt.Tx) error {
		refs := refCounts(tx)
		return stForEachJSON(tx, bucketLayers, func(k string, l Layer) error {
			l.RefCount = refs[k]
			out = append(out, l)
			return nil
		})
	})
	if err != nil {
		return nil, Wrap(err, "list layers", s.root)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Depth != out[j].Depth {
			return out[i].Depth < out[j].Depth
		}
		return out[i].ChainID < out[j].ChainID
	})
	return out, nil
}

// resolveLayer finds the ChainID ref names: a full ChainID, its hex, or a
// unique prefix of the hex of at least 4 digits.
func resolveLayer(tx *bolt.Tx, ref string) (string, error) {
	b := tx.Bucket(bucketLayers)
	if b.Get([]byte(ref)) != nil {
		return ref, nil
	}
	hexRef := strings.TrimPrefix(ref, "sha256:")
	if b.Get([]byte("sha256:"+hexRef)) != nil {
		return "sha256:" + hexRef, nil
	}
	if len(hexRef) >= 4 && stIsHex(hexRef) {
		var found []string
		c := b.Cursor()
		prefix := []byte("sha256:" + hexRef)
		for k, _ := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, _ = c.Next() {
			found = append(found, string(k))
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
		default:
			return "", Errorf(ErrInvalidArgument, "layer", ref, "ambiguous: matches %d layers", len(found))
		}
	}
	return "", Errorf(ErrNotFound, "layer", ref, "no such layer")
}

// stIsHex reports whether s is all lower-case hex digits.
func stIsHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// refCounts counts the references to each layer: images whose top layer it
// is, child layers, containers and mounted views on it.
func refCounts(tx *bolt.Tx) map[string]int {
	refs := map[string]int{}
	_ = stForEachJSON(tx, bucketImages, func(_ string, img Image) error {
		if top := img.TopLayer(); top != "" {
			refs[string(top)]++
		}
		return nil
	})
	_ = stForEachJSON(tx, bucketLayers, func(_ string, l Layer) error {
		if l.Parent != "" {
			refs[string(l.Parent)]++
		}
		return nil
	})
	_ = stForEachJSON(tx, bucketContainers, func(_ string, c Container) error {
		if c.Layer != "" {
			refs[string(c.Layer)]++
		}
		return nil
	})
	_ = stForEachJSON(tx, bucketViews, func(_ string, v viewRecord) error {
		if v.Layer != "" {
			refs[string(v.Layer)]++
		}
		return nil
	})
	return refs
}
