package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/unionstack/unionstack/graph"
)

// The layout of --root: each driver keeps its data in ROOT/DRIVER, and the
// image store on top of it keeps its metadata (store.db, tar-split data)
// in ROOT/images/DRIVER, so a driver never sees the store's files.

// driverRoot is where the driver of --driver keeps its data.
func driverRoot() string { return filepath.Join(global.root, global.driver) }

// storeRoot is where the image store on the driver keeps its metadata.
func storeRoot() string { return filepath.Join(global.root, "images", global.driver) }

// openStore opens the driver named by --driver with --driver-opt under
// --root, and the image store on it. close releases both.
func openStore() (s *graph.Store, closeFn func() error, err error) {
	if global.root == "" {
		return nil, nil, usagef("--root must not be empty")
	}
	if global.driver == "" || filepath.Base(global.driver) != global.driver {
		return nil, nil, usagef("--driver %q is not a driver name (see `unionctl driver ls`)", global.driver)
	}
	opts, err := graph.ParseOptions(global.driverOpts)
	if err != nil {
		return nil, nil, usageError{err}
	}
	d, err := graph.Open(global.driver, driverRoot(), opts)
	if err != nil {
		if errors.Is(err, graph.ErrNotFound) {
			// An unknown driver name is a usage error, not a missing object.
			return nil, nil, usageError{err}
		}
		return nil, nil, err
	}
	s, err = graph.OpenStore(storeRoot(), d)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return s, func() error {
		return errors.Join(s.Close(), d.Close())
	}, nil
}

// withStore runs fn with the open store and closes it afterwards.
func withStore(fn func(s *graph.Store) error) error {
	s, closeFn, err := openStore()
	if err != nil {
		return err
	}
	err = fn(s)
	if cerr := closeFn(); cerr != nil && err == nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	return err
}
