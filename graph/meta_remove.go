package graph

import (
	"context"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Remove removes the snapshot key and its data. It fails with
// ErrFailedPrecondition while key has children or a commit of it is in
// progress.
//
// Steps, each safe to crash after: (1) mark it removing (it disappears from
// view), (2) b.Remove, (3) delete the record. If the backend fails, the
// snapshot is visible again so that Remove can be retried.
func (d *driver) Remove(ctx context.Context, key string) error {
	const op = "remove"
	if err := validateKey(op, key, "key"); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return Wrap(err, op, key)
	}
	if err := d.enter(op, key); err != nil {
		return err
	}
	defer d.mu.RUnlock()

	var r *record
	err := d.db.Update(func(tx *bolt.Tx) error {
		var err error
		r, err = visibleRecord(tx, op, key)
		if err != nil {
			return err
		}
		if r.State == stateCommitting {
			return Errorf(ErrFailedPrecondition, op, key, "a commit to %q is in progress", r.CommitTo)
		}
		if kids := children(tx, key); len(kids) > 0 {
			return Errorf(ErrFailedPrecondition, op, key, "snapshot has %d children (%s)", len(kids), quoteSome(kids, 3))
		}
		r.State = stateRemoving
		return Wrap(putRecord(tx, key, r), op, key)
	})
	if err != nil {
		return err
	}

	if err := d.b.Remove(ctx, r.idString()); err != nil {
		err = fmt.Errorf("backend remove of id %s: %w", r.idString(), err)
		uerr := d.db.Update(func(tx *bolt.Tx) error {
			r.State = stateReady
			return putRecord(tx, key, r)
		})
		return Wrap(errors.Join(err, uerr), op, key)
	}
	return Wrap(d.db.Update(func(tx *bolt.Tx) error { return deleteRecord(tx, key, r) }), op, key)
}

// quoteSome quotes the first n of keys for an error message.
func quoteSome(keys []string, n int) string {
	var b strings.Builder
	for i, k := range keys {
		if i == n {
			fmt.Fprintf(&b, ", ... %d more", len(keys)-n)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", k)
	}
	return b.String()
}
