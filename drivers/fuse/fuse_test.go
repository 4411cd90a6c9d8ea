package fuse_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/unionstack/unionstack/drivers/fuse"
	"github.com/unionstack/unionstack/drivers/fuse/fusetest"
	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/graphtest"
)

// TestMain lets this test binary serve the driver's fuse3.unionctl mounts.
func TestMain(m *testing.M) { fusetest.Main(m) }

func factory(t *testing.T, root string) (graph.Driver, error) {
	return fuse.New(root, nil)
}

func TestConformance(t *testing.T) {
	graphtest.RunFeatures(t, factory, graphtest.Features{
		MaxDepth: 500,
		CountData: func(root string) (int, error) {
			entries, err := os.ReadDir(filepath.Join(root, "snapshots"))
			return len(entries), err
		},
	})
}
