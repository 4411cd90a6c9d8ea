package graph

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Commit turns the active snapshot key into the committed snapshot name,
// keeping its id and data. The committed snapshot gets the labels of opts
// (not those of the active one), and its usage is measured and cached now.
//
// Steps, each safe to crash after: (1) mark key committing and reserve
// name, (2) measure usage and b.Commit, (3) replace both records by the
// committed one. A crash before (3) leaves key active as it was.
func (d *driver) Commit(ctx context.Context, name, key string, opts ...Opt) error {
	const op = "commit"
	if err := validateKey(op, key, "key"); err != nil {
		return err
	}
	if err := validateKey(op, name, "name"); err != nil {
		return Wrap(err, op, key)
	}
	base, err := applyOpts(op, key, opts)
	if err != nil {
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
	err = d.db.Update(func(tx *bolt.Tx) error {
		var err error
		r, err = visibleRecord(tx, op, key)
		if err != nil {
			return err
		}
		if r.Kind != KindActive {
			return Errorf(ErrFailedPrecondition, op, key, "snapshot is %s; only an active snapshot can be committed", r.Kind)
		}
		if r.State == stateCommitting {
			return Errorf(ErrFailedPrecondition, op, key, "a commit to %q is in progress", r.CommitTo)
		}
		old, err := getRecord(tx, name)
		if err != nil {
			return Wrap(err, op, key)
		}
		if old != nil {
			return Errorf(ErrAlreadyExists, op, key, "name %q is taken%s", name, stateNote(old))
		}
		r.State, r.CommitTo = stateCommitting, name
		if err := putRecord(tx, key, r); err != nil {
			return Wrap(err, op, key)
		}
		return Wrap(putRecord(tx, name, &record{ID: r.ID, State: stateReserved, Created: now()}), op, key)
	})
	if err != nil {
		return err
	}

	usage, err := d.commitData(ctx, r)
	if err != nil {
		return Wrap(errors.Join(err, d.undoCommit(key, name, r)), op, key)
	}

	err = d.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketSnapshots).Delete([]byte(name)); err != nil {
			return err
		}
		if err := deleteRecord(tx, key, r); err != nil {
			return err
		}
		t := now()
		c := &record{
			ID: r.ID, Kind: KindCommitted, Parent: r.Parent, Chain: r.Chain,
			Labels: copyLabels(base.Labels), Created: t, Updated: t,
			State: stateReady, Usage: &usage,
		}
		if err := putRecord(tx, name, c); err != nil {
			return err
		}
		if c.Parent != "" {
			return tx.Bucket(bucketChildren).Put(childLink(c.Parent, name), nil)
		}
		return nil
	})
	if err != nil {
		return Wrap(errors.Join(err, d.undoCommit(key, name, r)), op, key)
	}
	return nil
}

// commitData measures the usage of the active snapshot r and tells the
// backend it is committed.
func (d *driver) commitData(ctx context.Context, r *record) (Usage, error) {
	s := r.snapshot()
	usage, err := d.b.Usage(ctx, s)
	if err != nil {
		return Usage{}, fmt.Errorf("backend usage of id %s: %w", s.ID, err)
	}
	s.Kind = KindCommitted
	if err := d.b.Commit(ctx, s); err != nil {
		return Usage{}, fmt.Errorf("backend commit of id %s: %w", s.ID, err)
	}
	return usage, nil
}

// undoCommit makes key a plain active snapshot again and drops the
// reservation of name.
func (d *driver) undoCommit(key, name string, r *record) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		if res, err := getRecord(tx, name); err == nil && res != nil && res.State == stateReserved {
			if err := tx.Bucket(bucketSnapshots).Delete([]byte(name)); err != nil {
				return err
			}
		}
		r.State, r.CommitTo = stateReady, ""
		return putRecord(tx, key, r)
	})
	if err != nil {
		return fmt.Errorf("undo: %w", err)
	}
	return nil
}
