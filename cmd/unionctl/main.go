// Command unionctl is the unionstack CLI: union mounts (mount, umount,
// branch), the image and layer store (image, layer, prune), drivers
// (driver ls), benchmarks (bench) and the plugins.
//
// Invoked by mount(8) as a FUSE mount helper (unionctl SOURCE MOUNTPOINT
// -o OPTIONS, for "-t fuse3.unionctl" and /etc/fstab) it mounts a union.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/unionstack/unionstack/graph"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 3
)

// usageError marks an error in how unionctl was called (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usage error (exit code 2).
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// globalFlags are the flags every subcommand shares.
type globalFlags struct {
	root       string
	driver     string
	driverOpts []string
}

var global globalFlags

var rootCmd = &cobra.Command{
	Use:           "unionctl",
	Short:         "union filesystems and container storage drivers",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	pf := rootCmd.PersistentFlags()
	pf.StringVar(&global.root, "root", "/var/lib/unionstack", "directory holding the layer store")
	pf.StringVar(&global.driver, "driver", "vfs", "storage driver: vfs, overlay or fuse (unionctl driver ls tells which run here)")
	pf.StringSliceVar(&global.driverOpts, "driver-opt", nil, "driver option key=value (repeatable)")
	rootCmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
}

func main() {
	os.Exit(run(os.Args))
}

// run executes unionctl with args and returns the exit code.
func run(args []string) int {
	if isMountHelperCall(args) {
		return runMountHelper(args)
	}
	rootCmd.SetArgs(args[1:])
	err := rootCmd.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "unionctl:", err)
	return exitCode(err)
}

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue), errors.Is(err, graph.ErrInvalidArgument):
		return exitUsage
	case errors.Is(err, graph.ErrNotFound):
		return exitNotFound
	case isUnknownCommand(err):
		return exitUsage
	}
	return exitFailure
}

// isUnknownCommand recognises cobra's errors for bad subcommands and
// argument counts, which carry no type of their own.
func isUnknownCommand(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires at most", "unknown flag", "unknown shorthand"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
