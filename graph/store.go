package graph

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// DefaultMaxDepth is the deepest layer chain a Store accepts unless
// StoreOptions or the driver say otherwise (Docker's limit for aufs and
// overlay).
const DefaultMaxDepth = 125

// Snapshot labels the Store sets, so that it recognises its own snapshots
// after a crash.
const (
	// LabelUnpack marks an active snapshot a layer is being unpacked into;
	// OpenStore removes any it finds (an import that never finished).
	LabelUnpack = "unionstack.io/unpack"
	// LabelLayer marks a committed snapshot that is a Store layer; its
	// value is the layer's DiffID.
	LabelLayer = "unionstack.io/layer"
	// LabelContainer marks a container's active snapshot; its value is
	// the container id.
	LabelContainer = "unionstack.io/container"
	// LabelView marks a view of an image mounted for inspection; its
	// value is the directory it is mounted at.
	LabelView = "unionstack.io/view"
	// LabelExport marks a short-lived view read by Export or a diff.
	LabelExport = "unionstack.io/export"
)

// DepthLimiter is implemented by a Driver (and a Backend) that knows how
// deep a parent chain it can stack: overlay 500, the kernel's limit. The
// Store then takes that limit instead of DefaultMaxDepth. A MaxDepth of 0
// means no limit of the driver's own.
type DepthLimiter interface {
	MaxDepth() int
}

// StoreOptions tune OpenStore.
type StoreOptions struct {
	// MaxDepth is the deepest layer chain accepted; 0 means the
	// driver's own limit (DepthLimiter), or DefaultMaxDepth if it has
	// none. It is never more than the driver's limit.
	MaxDepth int
}

// Store is the image and layer store on top of a Driver: layers addressed
// by OCI DiffID and ChainID (each one a committed snapshot named by its
// ChainID), images (name, config, layer chain), containers (an active
// snapshot on an image's top layer), reference counts and prune.
//
// Its own metadata is a bbolt database at ROOT/store.db, separate from the
// driver's; the tar-split data that lets Export reproduce a layer's tar byte
// for byte lives at ROOT/layers/HEX/tar-split.json.gz. One process opens a
// Store at a time.
type Store struct {
	root     string
	d        Driver
	db       *bolt.DB
	maxDepth int

	mu         sync.Mutex                   // serialises check-then-act changes of the metadata
	pins       map[string]int               // chainIDs an operation in progress relies on
	chainLocks map[digest.Digest]*chainLock // one unpack per ChainID at a time
}

// chainLock serialises the creation of one layer.
type chainLock struct {
	mu sync.Mutex
	n  int // holders and waiters
}

// lockChain makes the caller the only one creating layer c until unlock.
func (s *Store) lockChain(c digest.Digest) (unlock func()) {
	s.mu.Lock()
	l := s.chainLocks[c]
	if l == nil {
		l = &chainLock{}
		s.chainLocks[c] = l
	}
	l.n++
	s.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.mu.Lock()
		if l.n--; l.n == 0 {
			delete(s.chainLocks, c)
		}
		s.mu.Unlock()
	}
}

// Layer is one layer of the Store: a committed snapshot named by ChainID.
type Layer struct {
	ChainID digest.Digest `json:"chainID"`
	DiffID  digest.Digest `json:"diffID"`
	// Parent is the ChainID of the layer below, "" for a base layer.
	Parent digest.Digest `json:"parent,omitempty"`
	// Depth is the number of layers in the chain, this one included.
	Depth int `json:"depth"`
	// Size is the size of the uncompressed layer tar.
	Size int64 `json:"size"`
	// CompressedDigest and MediaType describe the blob the layer was
	// imported from ("" when it was committed from a container).
	CompressedDigest digest.Digest `json:"compressedDigest,omitempty"`
	CompressedSize   int64         `json:"compressedSize,omitempty"`
	MediaType        string        `json:"mediaType,omitempty"`
	Created          time.Time     `json:"created"`
	// RefCount is computed, not stored: the images whose top layer this
	// is, plus child layers, plus containers and mounted views on it.
	RefCount int `json:"refCount"`
}

// Image is one image of the Store.
type Image struct {
	// ID is the digest of the config, as Docker and containerd name images.
	ID digest.Digest `json:"id"`
	// Names are the references that point at the image ("busybox:latest").
	Names []string `json:"names,omitempty"`
	// Config is the image config JSON exactly as imported.
	Config []byte `json:"config"`
	// ConfigMediaType is the media type the config came with.
	ConfigMediaType string `json:"configMediaType,omitempty"`
	// DiffIDs and ChainIDs list the layers, base first.
	DiffIDs  []digest.Digest `json:"diffIDs"`
	ChainIDs []digest.Digest `json:"chainIDs"`
	Created  time.Time       `json:"created"`
}

// TopLayer returns the ChainID of the image's top layer, "" when it has none.
func (img Image) TopLayer() digest.Digest {
	if len(img.ChainIDs) == 0 {
		return ""
	}
	return img.ChainIDs[len(img.ChainIDs)-1]
}

// Container is an active snapshot on an image's top layer.
type Container struct {
	ID      string        `json:"id"`
	Image   digest.Digest `json:"image"`
	Layer   digest.Digest `json:"layer"` // ChainID the snapshot is on
	Key     string        `json:"key"`   // the driver's snapshot key
	Created time.Time     `json:"created"`
}

// bbolt buckets of the store's metadata.
var (
	bucketLayers     = []byte("layers")     // chainID -> Layer JSON
	bucketImages     = []byte("images")     // image id -> Image JSON
	bucketNames      = []byte("names")      // name -> image id
	bucketContainers = []byte("containers") // container id -> Container JSON
	bucketViews      = []byte("views")      // mount dir -> view key
)

// ChainID returns the ChainID of a layer with diffID on top of the layer
// chain parent ("" for a base layer): the diffID itself for a base layer,
// sha256(parent + " " + diffID) otherwise.
func ChainID(parent, diffID digest.Digest) digest.Digest {
	if parent == "" {
		return diffID
	}
	return digest.FromString(string(parent) + " " + string(diffID))
}

// ChainIDs returns the ChainIDs of a layer stack given by its DiffIDs, base
// first.
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	var parent digest.Digest
	for i, d := range diffIDs {
		parent = ChainID(parent, d)
		out[i] = parent
	}
	return out
}

// OpenStore opens (creating if needed) the Store with its metadata under
// root on top of d, with default options. See OpenStoreWithOptions.
func OpenStore(root string, d Driver) (*Store, error) {
	return OpenStoreWithOptions(root, d, StoreOptions{})
}

// OpenStoreWithOptions opens the Store under root on top of d. It finishes
// what a crash interrupted: snapshots of unfinished imports, exports and
// commits are removed, and so are layers and containers the metadata does
// not know (a layer is visible only once complete). Close it when done; it
// does not close d.
func OpenStoreWithOptions(root string, d Driver, opts StoreOptions) (*Store, error) {
	const op = "open store"
	if d == nil {
		return nil, Errorf(ErrInvalidArgument, op, root, "no driver")
	}
	if opts.MaxDepth < 0 {
		return nil, Errorf(ErrInvalidArgument, op, root, "negative MaxDepth %d", opts.MaxDepth)
	}
	for _, dir := range []string{root, filepath.Join(root, "layers"), filepath.Join(root, "tmp")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, Wrap(err, op, root)
		}
	}
	db, err := bolt.Open(filepath.Join(root, "store.db"), 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, Errorf(ErrFailedPrecondition, op, root, "store is in use by another process")
		}
		return nil, Wrap(err, op, root)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLayers, bucketImages, bucketNames, bucketContainers, bucketViews} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, Wrap(err, op, root)
	}
	s := &Store{root: root, d: d, db: db, pins: map[string]int{}, chainLocks: map[digest.Digest]*chainLock{}}
	s.maxDepth = storeMaxDepth(opts.MaxDepth, d)
	if err := s.recover(context.Background()); err != nil {
		db.Close()
		return nil, Wrap(err, op, root)
	}
	return s, nil
}

// Close closes the Store's metadata. The Driver stays open.
func (s *Store) Close() error {
	return s.db.Close()
}

// Driver returns the Driver the Store is on.
func (s *Store) Driver() Driver { return s.d }

// Root returns the directory of the Store's metadata.
func (s *Store) Root() string { return s.root }

// storeMaxDepth is the depth limit of a Store on d when asked for want
// (0: no preference).
func storeMaxDepth(want int, d Driver) int {
	limit := 0
	if dl, ok := d.(DepthLimiter); ok {
		limit = dl.MaxDepth()
	}
	switch {
	case want > 0 && (limit <= 0 || want < limit):
		return want
	case limit > 0:
		return limit
	}
	return DefaultMaxDepth
}

// MaxDepth returns the deepest layer chain the Store accepts.
func (s *Store) MaxDepth() int { return s.maxDepth }

// tarSplitPath is where the tar-split data of layer chainID lives.
func (s *Store) tarSplitPath(chainID digest.Digest) string {
	return filepath.Join(s.root, "layers", chainID.Encoded(), "tar-split.json.gz")
}

// tmpDir returns a fresh scratch directory under ROOT/tmp.
func (s *Store) tmpDir(prefix string) (string, error) {
	return os.MkdirTemp(filepath.Join(s.root, "tmp"), prefix)
}

// stRandomKey returns prefix followed by 16 random hex digits.
func stRandomKey(prefix string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return prefix + hex.EncodeToString(b[:])
}

// pin keeps the layers chainIDs from being removed by Prune or RemoveLayer
// until unpin.
func (s *Store) pin(chainIDs ...digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range chainIDs {
		s.pins[string(c)]++
	}
}

// unpin undoes pin.
func (s *Store) unpin(chainIDs ...digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range chainIDs {
		if s.pins[string(c)]--; s.pins[string(c)] <= 0 {
			delete(s.pins, string(c))
		}
	}
}

// stGetJSON reads key of bucket into v; it reports whether the key exists.
func stGetJSON(tx *bolt.Tx, bucket []byte, key string, v any) (bool, error) {
	data := tx.Bucket(bucket).Get([]byte(key))
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, Errorf(ErrFailedPrecondition, "read metadata", key, "corrupt record: %v", err)
	}
	return true, nil
}

// stPutJSON writes v under key of bucket.
func stPutJSON(tx *bolt.Tx, bucket []byte, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), data)
}

// stForEachJSON decodes every value of bucket into a fresh T and calls fn.
func stForEachJSON[T any](tx *bolt.Tx, bucket []byte, fn func(key string, v T) error) error {
	return tx.Bucket(bucket).ForEach(func(k, data []byte) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return Errorf(ErrFailedPrecondition, "read metadata", string(k), "corrupt record: %v", err)
		}
		return fn(string(k), v)
	})
}

// stAllJSON reads every record of bucket, in key order.
func stAllJSON[T any](db *bolt.DB, bucket []byte) ([]T, error) {
	var out []T
	err := db.View(func(tx *bolt.Tx) error {
		return stForEachJSON(tx, bucket, func(_ string, v T) error {
			out = append(out, v)
			return nil
		})
	})
	return out, err
}
