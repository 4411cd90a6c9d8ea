package main

import (
	"os"

	"github.com/unionstack/unionstack/drivers/fuse"
	"github.com/unionstack/unionstack/graph"

	// The drivers this binary links. Each registers itself with graph.Register.
	_ "github.com/unionstack/unionstack/drivers/vfs"
	_ "github.com/unionstack/unionstack/overlay"
)

// The fuse driver's mounts ("fuse3.unionctl") are served by this very
// binary, wherever it lives, whether or not it is in PATH.
func init() {
	if exe, err := os.Executable(); err == nil {
		graph.RegisterMountHelper(fuse.HelperName, exe)
	}
}
