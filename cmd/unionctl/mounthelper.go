package main

// isMountHelperCall says whether unionctl was invoked by mount(8) as a FUSE
// mount helper: "unionctl SOURCE MOUNTPOINT [-o OPTIONS]".
func isMountHelperCall(args []string) bool {
	return false // owned by the unionfs work: see unionfs.HelperMain
}

// runMountHelper serves a mount-helper invocation and returns the exit code.
func runMountHelper(args []string) int {
	return exitFailure
}
