// Package fusetest lets a test binary serve the fuse driver's mounts: the
// driver's "fuse3.unionctl" mounts exec the unionctl mount helper, and in
// tests the test binary itself plays unionctl, reached through a link of
// that name.
package fusetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/unionstack/unionstack/drivers/fuse"
	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/unionfs"
)

// Main is the TestMain of a package whose tests mount through the fuse
// driver: run as the helper or its daemon, it serves the union; run as
// the tests, it registers itself as the helper and runs them.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to do after the tests: it
// returns their exit code (serving as the helper, it exits instead).
func Run(m *testing.M) int {
	if handled, code := unionfs.DaemonMain(); handled {
		os.Exit(code)
	}
	if filepath.Base(os.Args[0]) == fuse.HelperName && len(os.Args) == 4 && os.Args[1] == "serve" && os.Args[2] == "--socket" {
		os.Exit(serveMain(os.Args[3]))
	}
	if filepath.Base(os.Args[0]) == fuse.HelperName && unionfs.IsHelperCall(os.Args) {
		os.Exit(unionfs.HelperMain(os.Args))
	}
	return runTests(m)
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
	helper := filepath.Join(dir, fuse.HelperName)
	if err := os.Symlink(exe, helper); err != nil {
		panic(err)
	}
	graph.RegisterMountHelper(fuse.HelperName, helper)
	helperPath = helper
	return m.Run()
}

// helperPath is the test binary's link named unionctl, once the tests run.
var helperPath string
