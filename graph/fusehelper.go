package graph

import (
	"errors"
	"os/exec"
	"sync"
)

var (
	mountHelpersMu sync.Mutex
	mountHelpers   = map[string]string{}
	fuseMounters   = map[string]FuseMounter{}
)

// FuseMounter mounts a "fuse3.NAME" filesystem without running NAME's
// mount helper: typically it mounts /dev/fuse itself and hands the
// connection to a long-running server, which saves starting a daemon
// per mount. options are the mount's options (those that mount(8) would
// pass the helper with -o). It returns an error wrapping
// ErrMounterUnavailable, having mounted nothing, when it cannot serve
// now (no server running); MountAll then runs the helper.
type FuseMounter func(source, target string, options []string) error

// ErrMounterUnavailable is what a FuseMounter returns when it cannot
// serve the mount at the moment, so the helper has to.
var ErrMounterUnavailable = errors.New("fuse mounter unavailable")

// RegisterFuseMounter registers m for "fuse3.NAME" (and "fuse.NAME")
// mounts; MountAll tries it before running the mount helper.
func RegisterFuseMounter(name string, m FuseMounter) {
	mountHelpersMu.Lock()
	defer mountHelpersMu.Unlock()
	fuseMounters[name] = m
}

// lookupFuseMounter returns the FuseMounter registered for NAME, or nil.
func lookupFuseMounter(name string) FuseMounter {
	mountHelpersMu.Lock()
	defer mountHelpersMu.Unlock()
	return fuseMounters[name]
}

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
