package graph

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/unionstack/unionstack/graph/archive"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// MetadataFile is the name of the metadata store below a driver's root.
const MetadataFile = "metadata.db"

// lockTimeout is how long NewDriver waits for the lock of a store another
// process (or another Driver of this process) holds.
const lockTimeout = time.Second

// NewDriver returns a Driver that keeps all snapshot metadata in a bbolt
// store at root/metadata.db and the data of each snapshot in b, by numeric
// id. At open it finishes what a crash interrupted: snapshots half-created
// or half-removed are removed, and b.Cleanup drops data nothing refers to.
//
// The Driver owns b from then on and closes it with Close; if NewDriver
// fails, it closes b itself. A store is opened by one Driver at a time: a
// second NewDriver on the same root fails (ErrFailedPrecondition) after a
// short wait instead of hanging. If b implements BackendLayerDirer, the
// Driver implements LayerDirer.
func NewDriver(root string, b Backend) (Driver, error) {
	d, err := openDriver(root, b)
	if err != nil {
		if b != nil {
			_ = b.Close()
		}
		return nil, err
	}
	if bl, ok := b.(BackendLayerDirer); ok {
		return &layerDirDriver{driver: d, bl: bl}, nil
	}
	return d, nil
}

// driver is the Driver NewDriver returns: metadata in bbolt, data in a
// Backend.
type driver struct {
	root string
	db   *bolt.DB
	b    Backend

	// mu is held for reading by every operation and for writing by Close,
	// so that Close waits for operations in flight.
	mu     sync.RWMutex
	closed bool
}

// layerDirDriver is a driver whose Backend keeps each active snapshot's
// changes in a layer directory.
type layerDirDriver struct {
	*driver
	bl BackendLayerDirer
}

func openDriver(root string, b Backend) (*driver, error) {
	const op = "new driver"
	if root == "" {
		return nil, Errorf(ErrInvalidArgument, op, root, "empty root directory")
	}
	if b == nil {
		return nil, Errorf(ErrInvalidArgument, op, root, "no backend")
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, Wrap(err, op, root)
	}
	path := filepath.Join(root, MetadataFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, Errorf(ErrFailedPrecondition, op, root,
				"metadata store %s is locked: another driver (in this or another process) has it open", path)
		}
		return nil, Wrap(fmt.Errorf("open metadata store %s: %w", path, err), op, root)
	}
	d := &driver{root: root, db: db, b: b}
	if err := db.Update(initBuckets); err != nil {
		_ = db.Close()
		return nil, Wrap(fmt.Errorf("metadata store %s: %w", path, err), op, root)
	}
	if err := d.recoverCrash(context.Background()); err != nil {
		_ = db.Close()
		return nil, Wrap(err, op, root)
	}
	return d, nil
}

// Close closes the metadata store and the backend. It waits for operations
// in flight; later calls fail with ErrFailedPrecondition.
func (d *driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.db.Close()
	if berr := d.b.Close(); berr != nil && err == nil {
		err = berr
	}
	return Wrap(err, "close driver", d.root)
}

// enter starts an operation; the caller must call d.mu.RUnlock when done.
func (d *driver) enter(op, key string) error {
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return Errorf(ErrFailedPrecondition, op, key, "driver is closed")
	}
	return nil
}

// LayerDir returns the directory holding the changes of the active
// snapshot key, as the Backend says.
func (d *layerDirDriver) LayerDir(ctx context.Context, key string) (string, archive.Format, error) {
	const op = "layer dir"
	var zero archive.Format
	r, release, err := d.enterRecord(op, key)
	if err != nil {
		return "", zero, err
	}
	defer release()
	if r.Kind != KindActive {
		return "", zero, Errorf(ErrFailedPrecondition, op, key, "snapshot is %s; only an active snapshot has a layer dir", r.Kind)
	}
	dir, format, err := d.bl.LayerDir(ctx, r.snapshot())
	if err != nil {
		return "", zero, Wrap(err, op, key)
	}
	return dir, format, nil
}

// ParentLayerDirs returns the layer directories of the committed parents
// of the active snapshot key, nearest first, as the Backend keeps them.
func (d *layerDirDriver) ParentLayerDirs(ctx context.Context, key string) ([]string, error) {
	const op = "parent layer dirs"
	r, release, err := d.enterRecord(op, key)
	if err != nil {
		return nil, err
	}
	defer release()
	chain := r.snapshot().ParentIDs
	dirs := make([]string, 0, len(chain))
	for i, id := range chain {
		dir, _, err := d.bl.LayerDir(ctx, Snapshot{ID: id, Kind: KindCommitted, ParentIDs: chain[i+1:]})
		if err != nil {
			return nil, Wrap(err, op, key)
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// MaxDepth is the Backend's limit on parent chains (0: none of its own).
func (d *driver) MaxDepth() int {
	if dl, ok := d.b.(DepthLimiter); ok {
		return dl.MaxDepth()
	}
	return 0
}

// enterRecord starts an operation on key and reads its visible record; on
// success the caller must call release when done.
func (d *driver) enterRecord(op, key string) (r *record, release func(), err error) {
	if err := d.enter(op, key); err != nil {
		return nil, nil, err
	}
	r, err = d.lookup(op, key)
	if err != nil {
		d.mu.RUnlock()
		return nil, nil, err
	}
	return r, d.mu.RUnlock, nil
}

// lookup reads the visible record of key.
func (d *driver) lookup(op, key string) (*record, error) {
	if err := validateKey(op, key, "key"); err != nil {
		return nil, err
	}
	var r *record
	err := d.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = visibleRecord(tx, op, key)
		return err
	})
	return r, err
}
