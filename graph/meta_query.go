package graph

import (
	"context"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Mounts returns the mounts of the active snapshot or view key.
func (d *driver) Mounts(ctx context.Context, key string) ([]Mount, error) {
	const op = "mounts"
	r, release, err := d.enterRecord(op, key)
	if err != nil {
		return nil, err
	}
	defer release()
	if r.Kind == KindCommitted {
		return nil, Errorf(ErrFailedPrecondition, op, key, "a committed snapshot has no mounts; View or Prepare on top of it")
	}
	mounts, err := d.b.Mounts(ctx, r.snapshot())
	if err != nil {
		return nil, Wrap(err, op, key)
	}
	return mounts, nil
}

// Stat returns the metadata of snapshot key.
func (d *driver) Stat(ctx context.Context, key string) (Info, error) {
	const op = "stat"
	r, release, err := d.enterRecord(op, key)
	if err != nil {
		return Info{}, err
	}
	defer release()
	return r.info(key), nil
}

// Update changes the labels of snapshot info.Name: field path "labels"
// replaces them all with info.Labels, "labels.KEY" sets (or, when
// info.Labels lacks KEY, deletes) one; with no field paths all labels are
// replaced. Kind, parent and name cannot change: naming them is
// ErrInvalidArgument, and the values in info are otherwise ignored.
func (d *driver) Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error) {
	const op = "update"
	key := info.Name
	if err := validateKey(op, key, "key"); err != nil {
		return Info{}, err
	}
	if err := validateLabels(op, key, info.Labels); err != nil {
		return Info{}, err
	}
	for _, p := range fieldpaths {
		if p != "labels" && (!strings.HasPrefix(p, "labels.") || p == "labels.") {
			return Info{}, Errorf(ErrInvalidArgument, op, key, "cannot update field %q; only \"labels\" and \"labels.KEY\" can change", p)
		}
	}
	if err := ctx.Err(); err != nil {
		return Info{}, Wrap(err, op, key)
	}
	if err := d.enter(op, key); err != nil {
		return Info{}, err
	}
	defer d.mu.RUnlock()

	var out Info
	err := d.db.Update(func(tx *bolt.Tx) error {
		r, err := visibleRecord(tx, op, key)
		if err != nil {
			return err
		}
		if len(fieldpaths) == 0 {
			r.Labels = copyLabels(info.Labels)
		}
		for _, p := range fieldpaths {
			if p == "labels" {
				r.Labels = copyLabels(info.Labels)
				continue
			}
			name := strings.TrimPrefix(p, "labels.")
			if v, ok := info.Labels[name]; ok {
				if r.Labels == nil {
					r.Labels = map[string]string{}
				}
				r.Labels[name] = v
			} else {
				delete(r.Labels, name)
			}
		}
		r.Updated = now()
		if err := putRecord(tx, key, r); err != nil {
			return Wrap(err, op, key)
		}
		out = r.info(key)
		return nil
	})
	if err != nil {
		return Info{}, err
	}
	return out, nil
}

// Usage returns the bytes and inodes the data of snapshot key itself takes:
// for a committed snapshot as measured at commit, else as the backend
// measures it now.
func (d *driver) Usage(ctx context.Context, key string) (Usage, error) {
	const op = "usage"
	r, release, err := d.enterRecord(op, key)
	if err != nil {
		return Usage{}, err
	}
	defer release()
	if r.Kind == KindCommitted && r.Usage != nil {
		return *r.Usage, nil
	}
	u, err := d.b.Usage(ctx, r.snapshot())
	if err != nil {
		return Usage{}, Wrap(err, op, key)
	}
	return u, nil
}

// Walk calls fn for each snapshot that matches all filters (see
// parseFilters), in key order. fn runs outside any transaction, so it may
// call the driver.
func (d *driver) Walk(ctx context.Context, fn WalkFunc, filters ...string) error {
	const op = "walk"
	match, err := parseFilters(filters...)
	if err != nil {
		return Wrap(err, op, "")
	}
	if err := d.enter(op, ""); err != nil {
		return err
	}
	var infos []Info
	err = d.db.View(func(tx *bolt.Tx) error {
		return forEachRecord(tx, func(key string, r *record) error {
			if r.visible() {
				if info := r.info(key); match(info) {
					infos = append(infos, info)
				}
			}
			return nil
		})
	})
	d.mu.RUnlock()
	if err != nil {
		return Wrap(err, op, "")
	}
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return Wrap(err, op, "")
		}
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}
