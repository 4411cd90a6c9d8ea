package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/unionstack/unionstack/unionfs"
)

// mountFlags are the flags of `unionctl mount`.
var mountFlags struct {
	foreground bool
	options    []string
}

var mountCmd = &cobra.Command{
	Use:   "mount [-f] [-o OPTIONS] [dirs=BR[=MODE]:...] MOUNTPOINT",
	Short: "mount an aufs-style union of directories (FUSE)",
	Long: `Mount a union of branch directories at MOUNTPOINT, aufs style:
dirs=BR[=MODE]:BR[=MODE]..., leftmost on top. Modes are rw, ro and rr (real
read-only); without modes the first branch is rw and the rest ro. Only the
top branch may be rw; a stack without an rw branch is a read-only union.
Relative branch paths are taken against the working directory.

The branches may be given as the first argument or inside -o. Other -o
options: udba=none|reval|notify (default: notify where the branches can be
watched, as root, else reval), entry_timeout=, attr_timeout=,
negative_timeout= (seconds), passthrough=on|off|all, fsname=NAME, allow_other,
debug, ro, noexec, noatime, nodiratime, nosuid, nodev (a union mounted by
root honours set-user-ID programs, file capabilities and device nodes
unless given these); mount(8)'s other generic options are accepted and
ignored.

unionctl mount returns once the union is mounted and leaves a daemon
serving it (-f: serve in the foreground), recorded in /run/unionctl. A bad
spec exits 2 and mounts nothing. End it with unionctl umount, umount(8) or
SIGTERM to the daemon.

unionctl is also a mount helper ("unionctl SOURCE MOUNTPOINT -o OPTIONS"),
for "mount -t fuse3.unionctl -o dirs=... none MOUNTPOINT" and /etc/fstab
lines of type fuse3.unionctl. mount(8) clears PATH, so link unionctl as
/sbin/mount.fuse3.unionctl (run by mount(8) itself), or as fuse3.unionctl
in /usr/local/sbin (run by mount.fuse3, which takes the whole type for the
program name).`,
	Example: "  unionctl mount dirs=./home:./company ./mnt\n  unionctl mount -o dirs=/a=rw:/b=ro,udba=notify /mnt",
	Args:    cobra.RangeArgs(1, 2),
	RunE:    runMount,
}

var umountCmd = &cobra.Command{
	Use:     "umount MOUNTPOINT",
	Aliases: []string{"unmount"},
	Short:   "flush and unmount a union mounted by unionctl mount",
	Long: `Flush and unmount the union at MOUNTPOINT and end its daemon. A mount whose
daemon was killed ("transport endpoint is not connected") is detached, and
stale state is removed. A path that is not a unionctl mount exits 2.`,
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return mountExitError(unionfs.Umount(args[0]))
	},
}

func init() {
	f := mountCmd.Flags()
	f.BoolVarP(&mountFlags.foreground, "foreground", "f", false, "serve in the foreground instead of a daemon")
	f.StringArrayVarP(&mountFlags.options, "options", "o", nil, "comma-separated mount options (repeatable)")
	rootCmd.AddCommand(mountCmd, umountCmd)
}

// runMount mounts a union as the arguments say.
func runMount(cmd *cobra.Command, args []string) error {
	source, mountpoint := "", args[len(args)-1]
	if len(args) == 2 {
		source = args[0]
		if !unionfs.IsHelperCall([]string{"unionctl", source, mountpoint}) {
			return usagef("mount: unexpected argument %q (want dirs=BR[=MODE]:... before MOUNTPOINT)", source)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	spec, err := unionfs.SpecFromArgs(source, mountFlags.options, wd)
	if err != nil {
		return mountExitError(err)
	}
	if mountFlags.foreground {
		return mountExitError(unionfs.Serve(spec, mountpoint, nil))
	}
	return mountExitError(unionfs.StartDaemon(spec, mountpoint))
}

// mountExitError turns a bad spec or a path that is no union mount into a
// usage error (exit code 2).
func mountExitError(err error) error {
	if errors.Is(err, unionfs.ErrBadSpec) || errors.Is(err, unionfs.ErrNotUnionMount) {
		return usageError{err}
	}
	return err
}
