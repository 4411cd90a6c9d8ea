// Package graphtest is the conformance suite every graph driver's tests
// run: a driver is done when it passes all of it (DESIGN.md, "Testing
// shape"). A driver's _test.go calls
//
//	graphtest.Run(t, func(t *testing.T, root string) (graph.Driver, error) {
//		return mydriver.New(root, nil)
//	})
//
// (or RunFeatures, to declare what the driver cannot do or should test
// harder). Every case is a subtest on a fresh driver in t.TempDir(); trees
// are mounted with graph.MountAll on temporary directories and unmounted
// with graph.UnmountAll in t.Cleanup. The helpers the cases use (WriteTree,
// CheckTree, CheckNames, MountTemp, PrepareTree, CommitLayer, ...) are
// exported for drivers' own tests.
package graphtest

import (
	"os"
	"testing"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testenv"
)

// Factory opens the driver under test with its data under root. Called
// again with the same root (after Close, or after the process that had it
// open was killed), it must reopen the same store.
type Factory func(t *testing.T, root string) (graph.Driver, error)

// Features declares what a driver supports, where it differs from the
// full suite. The zero value runs everything with the defaults.
type Features struct {
	// MaxDepth is the length of the parent chain the deep-chain case
	// builds; 0 means 128. drivers/fuse and overlay pass 500.
	MaxDepth int
	// NoDirRename, when not "", says why the driver cannot rename a
	// directory that came from a lower layer; the dir_rename case is then
	// skipped with that reason.
	NoDirRename string
	// UsageExtraInodes is how many inodes a snapshot's Usage may report
	// beyond the names written into it plus its root directory (e.g. a
	// filesystem's lost+found and reserved inodes).
	UsageExtraInodes int64
	// UsageExtraBytes is how many bytes beyond its files' blocks a
	// snapshot's Usage may report (e.g. filesystem metadata).
	UsageExtraBytes int64
	// CountData, when set, returns how many snapshots the driver holds
	// data for under root. The crash case then checks that recovery left
	// data for exactly the snapshots that survived, and none after all
	// are removed.
	CountData func(root string) (int, error)
}

// depth is the chain length to test.
func (f Features) depth() int {
	if f.MaxDepth > 0 {
		return f.MaxDepth
	}
	return 128
}

// suite is what every case gets.
type suite struct {
	factory  Factory
	features Features
}

// testCase is one case of the suite.
type testCase struct {
	name string
	run  func(t *testing.T, s *suite)
}

// cases is the whole suite, in the order it runs.
var cases = []testCase{
	{"lifecycle", testLifecycle},
	{"errors", testErrors},
	{"stat_update_walk", testStatUpdateWalk},
	{"deep_chain", testDeepChain},
	{"changes_across_layers", testChangesAcrossLayers},
	{"dir_rename", testDirRename},
	{"opaque_dir", testOpaqueDir},
	{"ownership_permissions", testOwnershipPermissions},
	{"xattrs", testXattrs},
	{"hardlinks_special_files", testHardlinksSpecial},
	{"sparse_files", testSparseFiles},
	{"usage", testUsage},
	{"diff_apply", testDiffApply},
	{"concurrent", testConcurrent},
	{"reopen", testReopen},
	{"crash_recovery", testCrashRecovery},
}

// CaseNames lists the names of the suite's subtests, in order.
func CaseNames() []string {
	names := make([]string, len(cases))
	for i, c := range cases {
		names[i] = c.name
	}
	return names
}

// Run runs the whole conformance suite against the drivers factory makes,
// with default Features.
func Run(t *testing.T, factory Factory) {
	t.Helper()
	RunFeatures(t, factory, Features{})
}

// RunFeatures runs the whole conformance suite against the drivers factory
// makes, adjusted by features. It needs root (mounts, owners, devices,
// trusted.* xattrs).
func RunFeatures(t *testing.T, factory Factory, features Features) {
	t.Helper()
	testenv.NeedRoot(t)
	s := &suite{factory: factory, features: features}
	child := os.Getenv(crashChildEnv) != ""
	for _, c := range cases {
		if child && c.name != "crash_recovery" {
			continue
		}
		t.Run(c.name, func(t *testing.T) { c.run(t, s) })
	}
}
