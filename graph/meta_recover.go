package graph

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// recoverCrash finishes what a crash interrupted, at open: snapshots still being
// created or removed lose their data and record, commits in progress are
// rolled back (the active snapshot stays), and the backend drops data of
// any id no record refers to.
func (d *driver) recoverCrash(ctx context.Context) error {
	type doomed struct {
		key string
		r   *record
	}
	var remove []doomed
	err := d.db.Update(func(tx *bolt.Tx) error {
		var reserved []string
		var reverted []doomed
		err := forEachRecord(tx, func(key string, r *record) error {
			switch r.State {
			case stateCreating, stateRemoving:
				remove = append(remove, doomed{key, r})
			case stateReserved:
				reserved = append(reserved, key)
			case stateCommitting:
				reverted = append(reverted, doomed{key, r})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range reserved {
			if err := tx.Bucket(bucketSnapshots).Delete([]byte(k)); err != nil {
				return err
			}
		}
		for _, x := range reverted {
			x.r.State, x.r.CommitTo = stateReady, ""
			if err := putRecord(tx, x.key, x.r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recover metadata: %w", err)
	}

	for _, x := range remove {
		if err := d.b.Remove(ctx, x.r.idString()); err != nil {
			return fmt.Errorf("recover: remove data of %s snapshot %q (id %s): %w", x.r.State, x.key, x.r.idString(), err)
		}
		if err := d.db.Update(func(tx *bolt.Tx) error { return deleteRecord(tx, x.key, x.r) }); err != nil {
			return fmt.Errorf("recover: delete record of %q: %w", x.key, err)
		}
	}

	live := map[string]bool{}
	err = d.db.View(func(tx *bolt.Tx) error {
		return forEachRecord(tx, func(_ string, r *record) error {
			if r.State != stateReserved {
				live[r.idString()] = true
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("recover: list live ids: %w", err)
	}
	if err := d.b.Cleanup(ctx, live); err != nil {
		return fmt.Errorf("recover: backend cleanup: %w", err)
	}
	return nil
}
