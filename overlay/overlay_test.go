package overlay

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/graph/graphtest"
	"github.com/unionstack/unionstack/internal/testenv"
)

// TestConformance runs the whole graphtest suite on overlay: chains of
// MaxDepth (500) layers, and directory rename across layers through
// redirect_dir where this host allows it.
func TestConformance(t *testing.T) {
	testenv.NeedRoot(t)
	features, err := Probe(t.TempDir())
	testenv.Need(t, err == nil, "overlay cannot run here: "+errString(err))
	f := graphtest.Features{
		MaxDepth:  MaxDepth,
		CountData: countData,
	}
	if testing.Short() {
		f.MaxDepth = 128
	}
	if features[FeatureRedirectDir] != "on" {
		f.NoDirRename = "overlayfs redirect_dir is not usable on this host (renaming a lower directory fails with EXDEV)"
	}
	graphtest.RunFeatures(t, func(t *testing.T, root string) (graph.Driver, error) {
		return New(root, nil)
	}, f)
}

// countData counts the snapshots whose data is under root.
func countData(root string) (int, error) {
	entries, err := os.ReadDir(filepath.Join(root, snapshotsDirName))
	return len(entries), err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
