package graph

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The layout of metadata.db. Every bucket is at the top level:
//
//	meta       "version" -> schemaVersion
//	snapshots  key -> JSON record
//	ids        id (decimal) -> key; its sequence is the id counter
//	children   parentKey NUL childKey -> empty (keys never contain NUL)
var (
	bucketMeta      = []byte("meta")
	bucketSnapshots = []byte("snapshots")
	bucketIDs       = []byte("ids")
	bucketChildren  = []byte("children")
	keyVersion      = []byte("version")
)

const schemaVersion = "1"

// maxKeyLen is the longest snapshot key accepted, in bytes.
const maxKeyLen = 4096

// maxLabelLen is the longest label (key plus value) accepted, in bytes.
const maxLabelLen = 4096

// state is the life-cycle state of a record. Only ready and committing
// records are visible; the others are finished or undone at the next open.
type state string

const (
	// stateCreating: recorded, backend data being created.
	stateCreating state = "creating"
	// stateReady: a normal, visible snapshot.
	stateReady state = "ready"
	// stateRemoving: backend data being removed.
	stateRemoving state = "removing"
	// stateCommitting: an active snapshot being committed to CommitTo.
	// Still visible as the active snapshot; reverts to ready on recovery.
	stateCommitting state = "committing"
	// stateReserved: the name a commit in progress will take. Invisible,
	// holds no data; dropped on recovery.
	stateReserved state = "reserved"
)

// record is what metadata.db keeps of one snapshot.
type record struct {
	ID       uint64            `json:"id"`
	Kind     Kind              `json:"kind"`
	Parent   string            `json:"parent,omitempty"`
	Chain    []string          `json:"chain,omitempty"` // ids of the parents, nearest first
	Labels   map[string]string `json:"labels,omitempty"`
	Created  time.Time         `json:"created"`
	Updated  time.Time         `json:"updated"`
	State    state             `json:"state"`
	CommitTo string            `json:"commitTo,omitempty"` // for stateCommitting
	Usage    *Usage            `json:"usage,omitempty"`    // cached at commit
}

// visible reports whether Stat, Walk and friends see the record.
func (r *record) visible() bool {
	return r.State == stateReady || r.State == stateCommitting
}

// idString is the id as the Backend sees it.
func (r *record) idString() string { return strconv.FormatUint(r.ID, 10) }

// snapshot is what the Backend is told about the record.
func (r *record) snapshot() Snapshot {
	return Snapshot{ID: r.idString(), Kind: r.Kind, ParentIDs: append([]string(nil), r.Chain...)}
}

// info is the record as the Driver API shows it.
func (r *record) info(key string) Info {
	return Info{
		Kind:    r.Kind,
		Name:    key,
		Parent:  r.Parent,
		Labels:  copyLabels(r.Labels),
		Created: r.Created,
		Updated: r.Updated,
	}
}

func copyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// validateKey checks a snapshot key (what is "the key" in errors: op, key).
func validateKey(op, key, what string) error {
	switch {
	case key == "":
		return Errorf(ErrInvalidArgument, op, key, "empty %s", what)
	case len(key) > maxKeyLen:
		return Errorf(ErrInvalidArgument, op, key[:64]+"...", "%s is %d bytes long, the limit is %d", what, len(key), maxKeyLen)
	case strings.IndexByte(key, 0) >= 0:
		return Errorf(ErrInvalidArgument, op, key, "%s contains a NUL byte", what)
	}
	return nil
}

// validateLabels checks labels given to Prepare, View, Commit or Update.
func validateLabels(op, key string, labels map[string]string) error {
	for k, v := range labels {
		if k == "" {
			return Errorf(ErrInvalidArgument, op, key, "label with an empty name")
		}
		if len(k)+len(v) > maxLabelLen {
			return Errorf(ErrInvalidArgument, op, key, "label %.64q is %d bytes long with its value, the limit is %d", k, len(k)+len(v), maxLabelLen)
		}
	}
	return nil
}

// applyOpts builds the Info the options describe and checks its labels.
func applyOpts(op, key string, opts []Opt) (Info, error) {
	var base Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return Info{}, Wrap(err, op, key)
		}
	}
	if err := validateLabels(op, key, base.Labels); err != nil {
		return Info{}, err
	}
	return base, nil
}

// initBuckets creates the buckets of a new store and checks the version of
// an existing one.
func initBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketMeta, bucketSnapshots, bucketIDs, bucketChildren} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keyVersion)
	if v == nil {
		return meta.Put(keyVersion, []byte(schemaVersion))
	}
	if string(v) != schemaVersion {
		return fmt.Errorf("metadata schema version %q, this program knows %q: %w", v, schemaVersion, ErrNotSupported)
	}
	return nil
}

// getRecord reads the record of key; nil when there is none.
func getRecord(tx *bolt.Tx, key string) (*record, error) {
	v := tx.Bucket(bucketSnapshots).Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	r := new(record)
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("corrupt metadata record %q: %w", key, err)
	}
	return r, nil
}

// putRecord writes the record of key and its id mapping.
func putRecord(tx *bolt.Tx, key string, r *record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketSnapshots).Put([]byte(key), v); err != nil {
		return err
	}
	if r.State == stateReserved {
		return nil // a reservation holds no id of its own
	}
	return tx.Bucket(bucketIDs).Put([]byte(r.idString()), []byte(key))
}

// deleteRecord removes the record of key, its id mapping and its link from
// its parent.
func deleteRecord(tx *bolt.Tx, key string, r *record) error {
	if err := tx.Bucket(bucketSnapshots).Delete([]byte(key)); err != nil {
		return err
	}
	if r.State != stateReserved {
		ids := tx.Bucket(bucketIDs)
		if string(ids.Get([]byte(r.idString()))) == key {
			if err := ids.Delete([]byte(r.idString())); err != nil {
				return err
			}
		}
	}
	if r.Parent != "" && r.State != stateReserved {
		return tx.Bucket(bucketChildren).Delete(childLink(r.Parent, key))
	}
	return nil
}

// childLink is the key in the children bucket that links child to parent.
func childLink(parent, child string) []byte {
	b := make([]byte, 0, len(parent)+1+len(child))
	b = append(b, parent...)
	b = append(b, 0)
	return append(b, child...)
}

// children lists the keys of the children of parent, in any state.
func children(tx *bolt.Tx, parent string) []string {
	prefix := childLink(parent, "")
	var out []string
	c := tx.Bucket(bucketChildren).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out
}

// forEachRecord calls fn for every record, in key order.
func forEachRecord(tx *bolt.Tx, fn func(key string, r *record) error) error {
	return tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
		r := new(record)
		if err := json.Unmarshal(v, r); err != nil {
			return fmt.Errorf("corrupt metadata record %q: %w", k, err)
		}
		return fn(string(k), r)
	})
}

// visibleRecord reads key for op and fails with ErrNotFound unless it is a
// visible snapshot.
func visibleRecord(tx *bolt.Tx, op, key string) (*record, error) {
	r, err := getRecord(tx, key)
	if err != nil {
		return nil, Wrap(err, op, key)
	}
	if r == nil || !r.visible() {
		return nil, Errorf(ErrNotFound, op, key, "no such snapshot")
	}
	return r, nil
}

// now is the time stamps are taken from, in UTC.
func now() time.Time { return time.Now().UTC() }
