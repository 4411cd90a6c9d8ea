package main

import (
	"os"

	"github.com/unionstack/unionstack/unionfs"
)

// isMountHelperCall says whether unionctl was invoked by mount(8) as a FUSE
// mount helper: "unionctl SOURCE MOUNTPOINT [-o OPTIONS]". It first serves
// the mount daemon when this process is one (re-executed by `unionctl
// mount`), and then exits with the daemon's code.
func isMountHelperCall(args []string) bool {
	if handled, code := unionfs.DaemonMain(); handled {
		os.Exit(code)
	}
	if !unionfs.IsHelperCall(args) {
		return false
	}
	// A subcommand name is never a mount source.
	if len(args) > 1 {
		for _, c := range rootCmd.Commands() {
			if c.Name() == args[1] || c.HasAlias(args[1]) {
				return false
			}
		}
	}
	return true
}

// runMountHelper serves a mount-helper invocation and returns the exit code.
func runMountHelper(args []string) int {
	return unionfs.HelperMain(args)
}
