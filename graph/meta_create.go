package graph

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Prepare creates the active snapshot key on top of the committed snapshot
// parent ("" for an empty base) and returns its mounts.
func (d *driver) Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error) {
	return d.create(ctx, "prepare", KindActive, key, parent, opts)
}

// View creates the read-only snapshot key of the committed snapshot parent
// ("" for an empty one) and returns its mounts.
func (d *driver) View(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error) {
	return d.create(ctx, "view", KindView, key, parent, opts)
}

// create makes a new active snapshot or view in three steps, each safe to
// crash after: (1) record it as creating, (2) b.Create, (3) flip it to
// ready. No transaction is held across the backend call.
func (d *driver) create(ctx context.Context, op string, kind Kind, key, parent string, opts []Opt) ([]Mount, error) {
	if err := validateKey(op, key, "key"); err != nil {
		return nil, err
	}
	if parent != "" {
		if err := validateKey(op, parent, "parent key"); err != nil {
			return nil, Wrap(err, op, key)
		}
	}
	base, err := applyOpts(op, key, opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, Wrap(err, op, key)
	}
	if err := d.enter(op, key); err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()

	t := now()
	r := &record{Kind: kind, Parent: parent, Labels: copyLabels(base.Labels), Created: t, Updated: t, State: stateCreating}
	err = d.db.Update(func(tx *bolt.Tx) error {
		old, err := getRecord(tx, key)
		if err != nil {
			return Wrap(err, op, key)
		}
		if old != nil {
			return Errorf(ErrAlreadyExists, op, key, "a snapshot with this key exists%s", stateNote(old))
		}
		if parent != "" {
			p, err := getRecord(tx, parent)
			if err != nil {
				return Wrap(err, op, key)
			}
			if p == nil || !p.visible() {
				return Errorf(ErrNotFound, op, key, "parent %q does not exist", parent)
			}
			if p.Kind != KindCommitted {
				return Errorf(ErrFailedPrecondition, op, key, "parent %q is %s; only a committed snapshot can be a parent", parent, p.Kind)
			}
			r.Chain = append([]string{p.idString()}, p.Chain...)
			if err := tx.Bucket(bucketChildren).Put(childLink(parent, key), nil); err != nil {
				return Wrap(err, op, key)
			}
		}
		id, err := tx.Bucket(bucketIDs).NextSequence()
		if err != nil {
			return Wrap(err, op, key)
		}
		r.ID = id
		return Wrap(putRecord(tx, key, r), op, key)
	})
	if err != nil {
		return nil, err
	}

	s := r.snapshot()
	mounts, err := d.createData(ctx, s)
	if err != nil {
		uerr := d.undoCreate(ctx, key, r)
		return nil, Wrap(errors.Join(err, uerr), op, key)
	}

	err = d.db.Update(func(tx *bolt.Tx) error {
		r.State = stateReady
		r.Updated = now()
		return putRecord(tx, key, r)
	})
	if err != nil {
		uerr := d.undoCreate(ctx, key, r)
		return nil, Wrap(errors.Join(err, uerr), op, key)
	}
	return mounts, nil
}

// createData asks the backend to create s and to say how to mount it.
func (d *driver) createData(ctx context.Context, s Snapshot) ([]Mount, error) {
	if err := d.b.Create(ctx, s); err != nil {
		return nil, fmt.Errorf("backend create of id %s: %w", s.ID, err)
	}
	mounts, err := d.b.Mounts(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("backend mounts of id %s: %w", s.ID, err)
	}
	return mounts, nil
}

// undoCreate removes the data and the record of a snapshot whose creation
// failed. If it fails too, the record stays "creating" and the next open
// removes it.
func (d *driver) undoCreate(ctx context.Context, key string, r *record) error {
	ctx = context.WithoutCancel(ctx)
	if err := d.b.Remove(ctx, r.idString()); err != nil {
		return fmt.Errorf("undo: backend remove of id %s: %w", r.idString(), err)
	}
	err := d.db.Update(func(tx *bolt.Tx) error { return deleteRecord(tx, key, r) })
	if err != nil {
		return fmt.Errorf("undo: delete record: %w", err)
	}
	return nil
}

// stateNote says, for an error message, why a record is not usable.
func stateNote(r *record) string {
	switch r.State {
	case stateCreating:
		return " (being created)"
	case stateRemoving:
		return " (being removed)"
	case stateReserved:
		return " (the target of a commit in progress)"
	case stateCommitting:
		return " (being committed)"
	}
	return ""
}
