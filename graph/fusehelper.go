package graph

import (
	"os/exec"
	"sync"
)

var (
	mountHelpersMu sync.Mutex
	mountHelpers   = map[string]string{}
)

// RegisterMountHelper says where the program serving "fuse3.NAME" mounts
// lives, for when it is not in PATH under that name (e.g. unionctl run as
// ./bin/unionctl registers its own executable for "unionctl", and tests
// register the test binary).
func RegisterMountHelper(name, path string) {
	mountHelpersMu.Lock()
	defer mountHelpersMu.Unlock()
	mountHelpers[name] = path
}

// LookupMountHelper returns the program that serves "fuse3.NAME" mounts:
// the registered one, else NAME found in PATH.
func LookupMountHelper(name string) (string, error) {
	mountHelpersMu.Lock()
	p, ok := mountHelpers[name]
	mountHelpersMu.Unlock()
	if ok {
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", Errorf(ErrNotSupported, "find mount helper", name, "not registered and not in PATH")
	}
	return p, nil
}
