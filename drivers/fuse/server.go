package fuse

import (
	"errors"
	"fmt"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/unionfs"
)

// The driver's mounts go to a running mount server (`unionctl serve`,
// socket unionfs.ServeSocket()) when there is one: the caller mounts
// /dev/fuse and hands the connection over, which costs a few messages
// instead of a daemon process per mount. Without a server, MountAll runs
// the unionctl helper as before.
func init() {
	graph.RegisterFuseMounter(HelperName, mountThroughServer)
}

// mountThroughServer is the driver's graph.FuseMounter.
func mountThroughServer(source, target string, options []string) error {
	spec, err := unionfs.SpecFromArgs(source, options, "/")
	if err != nil {
		return graph.Errorf(graph.ErrInvalidArgument, "mount", target, "%v", err)
	}
	err = unionfs.MountThroughServer(unionfs.ServeSocket(), spec, target)
	if errors.Is(err, unionfs.ErrNoMountServer) {
		return fmt.Errorf("%w: %w", graph.ErrMounterUnavailable, err)
	}
	if err != nil {
		return graph.Wrap(err, "mount", target)
	}
	return nil
}

// serverFeature describes the mount server for Probe.
func serverFeature() string {
	socket := unionfs.ServeSocket()
	if unionfs.MountServerAlive(socket) {
		return socket
	}
	return "none at " + socket + " (each mount starts a daemon)"
}
