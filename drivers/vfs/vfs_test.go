package vfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/graphtest"
)

// factory opens vfs at root for the conformance suite.
func factory(t *testing.T, root string) (graph.Driver, error) {
	return New(root, nil)
}

// countData counts the snapshot directories vfs keeps under root.
func countData(root string) (int, error) {
	entries, err := os.ReadDir(filepath.Join(root, "snapshots"))
	return len(entries), err
}

// TestConformance runs the whole graphtest suite on vfs.
func TestConformance(t *testing.T) {
	graphtest.RunFeatures(t, factory, graphtest.Features{CountData: countData})
}

// TestRegistered: vfs is in the registry, usable everywhere, and opens
// through graph.Open.
func TestRegistered(t *testing.T) {
	root := t.TempDir()
	found := false
	for _, a := range graph.Available(root) {
		if a.Name == Name {
			found = true
			if !a.Usable || a.Doc == "" {
				t.Errorf("availability of vfs: %+v", a)
			}
		}
	}
	if !found {
		t.Fatalf("vfs not registered: %v", graph.Drivers())
	}
	d, err := graph.Open(Name, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := graph.Open(Name, root, map[string]string{"bogus": "1"}); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("open with an unknown option: %v", err)
	}
}
