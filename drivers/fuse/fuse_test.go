package fuse

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/graphtest"
	"github.com/unionstack/unionstack/unionfs"
)

// TestMain lets this test binary serve as the unionctl mount helper: the
// driver's fuse3.unionctl mounts exec it as "unionctl SOURCE TARGET -o
// OPTIONS", and it re-execs itself as the daemon that serves the union.
func TestMain(m *testing.M) {
	if handled, code := unionfs.DaemonMain(); handled {
		os.Exit(code)
	}
	// The package is named fuse, so the test binary is "fuse.test", which
	// unionfs would take for a helper name; the helper is reached only
	// through a link named unionctl.
	if filepath.Base(os.Args[0]) == HelperName && unionfs.IsHelperCall(os.Args) {
		os.Exit(unionfs.HelperMain(os.Args))
	}
	os.Exit(runTests(m))
}

// runTests links the test binary as the unionctl helper and runs the tests.
func runTests(m *testing.M) int {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "fuse-helper")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	helper := filepath.Join(dir, HelperName)
	if err := os.Symlink(exe, helper); err != nil {
		panic(err)
	}
	graph.RegisterMountHelper(HelperName, helper)
	return m.Run()
}

func factory(t *testing.T, root string) (graph.Driver, error) {
	return New(root, nil)
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
