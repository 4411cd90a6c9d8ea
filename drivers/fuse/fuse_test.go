package fuse_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/unionstack/unionstack/drivers/fuse"
	"github.com/unionstack/unionstack/drivers/fuse/fusetest"
	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/graphtest"
	"github.com/unionstack/unionstack/unionfs"
)

// TestMain lets this test binary serve the driver's fuse3.unionctl mounts.
func TestMain(m *testing.M) { fusetest.Main(m) }

func factory(t *testing.T, root string) (graph.Driver, error) {
	return fuse.New(root, nil)
}

// conformance are the driver's features for the graphtest suite.
var conformance = graphtest.Features{
	MaxDepth: 500,
	CountData: func(root string) (int, error) {
		entries, err := os.ReadDir(filepath.Join(root, "snapshots"))
		return len(entries), err
	},
}

// TestConformance runs the suite with a mount daemon per mount.
func TestConformance(t *testing.T) {
	t.Setenv(unionfs.ServeSocketEnv, filepath.Join(t.TempDir(), "no-server.sock"))
	graphtest.RunFeatures(t, factory, conformance)
}

// TestConformanceServed runs the suite with every mount served by one
// mount server (unionctl serve).
func TestConformanceServed(t *testing.T) {
	fusetest.StartMountServer(t)
	graphtest.RunFeatures(t, factory, conformance)
}

// TestConformancePassthroughAll runs the suite served, with writable
// mounts passing lower files through (passthrough=all).
func TestConformancePassthroughAll(t *testing.T) {
	fusetest.StartMountServer(t)
	graphtest.RunFeatures(t, func(t *testing.T, root string) (graph.Driver, error) {
		return fuse.New(root, map[string]string{fuse.OptPassthrough: "all"})
	}, conformance)
}
