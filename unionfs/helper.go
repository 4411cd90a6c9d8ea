package unionfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// helperArgs is a parsed mount-helper command line.
type helperArgs struct {
	positional []string // SOURCE MOUNTPOINT
	opts       []string // the -o values, in order
	foreground bool     // -f
}

// helperParse parses "PROG SOURCE MOUNTPOINT [-o OPTS]...", options
// anywhere: -o OPTS or -oOPTS; -f (foreground, as FUSE programs take it;
// mount(8)'s "fake" for a program run as mount.TYPE); -n, -s, -v and
// -t TYPE (passed by mount(8) to /sbin/mount.TYPE helpers; ignored).
func helperParse(args []string) (helperArgs, error) {
	var h helperArgs
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o":
			if i+1 >= len(args) {
				return h, fmt.Errorf("%w: -o needs an option string", ErrBadSpec)
			}
			i++
			h.opts = append(h.opts, args[i])
		case strings.HasPrefix(a, "-o"):
			h.opts = append(h.opts, a[2:])
		case a == "-f":
			h.foreground = true
		case a == "-n" || a == "-s" || a == "-v":
		case a == "-t":
			i++ // the type mount(8) names; we know what we are
		case a == "--":
			h.positional = append(h.positional, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			return h, fmt.Errorf("%w: unknown flag %s", ErrBadSpec, a)
		default:
			h.positional = append(h.positional, a)
		}
	}
	return h, nil
}

// helperIsSpecSource says whether a mount source carries the branches
// itself ("dirs=..." or "br=..."/"br:..."), as in
// "mount -t fuse3.unionctl dirs=/a:/b /mnt".
func helperIsSpecSource(s string) bool {
	return strings.HasPrefix(s, "dirs=") || strings.HasPrefix(s, "br=") || strings.HasPrefix(s, "br:")
}

// helperCommandWords are unionctl subcommands that must never be taken
// for a mount source.
var helperCommandWords = map[string]bool{"mount": true, "umount": true, "unmount": true, "branch": true, "help": true}

// IsHelperCall says whether args (os.Args) is a mount-helper invocation,
// "unionctl SOURCE MOUNTPOINT -o OPTIONS" as mount.fuse3 runs it for
// "mount -t fuse3.unionctl ..." and /etc/fstab: exactly two positional
// arguments, no flags but -o/-f/-n/-s/-v, and an -o option string or a
// source that holds the branches (dirs=...).
//
// A program run under a helper name is always a helper call:
// "mount.fuse3.unionctl" (mount(8) runs /sbin/mount.TYPE directly) or
// "fuse3.unionctl" (mount.fuse3 of libfuse 3.14 runs the program named
// by the whole type "fuse3.unionctl", looked up in the shell's default
// PATH, since mount(8) clears PATH).
func IsHelperCall(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch filepath.Base(args[0]) {
	case "mount.fuse3.unionctl", "mount.fuse.unionctl", "mount.unionctl", "fuse3.unionctl", "fuse.unionctl":
		return true
	}
	h, err := helperParse(args)
	if err != nil || len(h.positional) != 2 || helperCommandWords[h.positional[0]] {
		return false
	}
	return len(h.opts) > 0 || helperIsSpecSource(h.positional[0])
}

// SpecFromArgs builds a mount spec from a mount source and -o option
// strings: the source counts as options when it holds the branches
// ("dirs=..."); anything else ("none", a name) is ignored. Relative
// branch paths are resolved against base.
func SpecFromArgs(source string, opts []string, base string) (MountSpec, error) {
	all := make([]string, 0, len(opts)+1)
	if helperIsSpecSource(source) {
		all = append(all, source)
	}
	all = append(all, opts...)
	spec, err := ParseOptionsAt(strings.Join(all, ","), base)
	if err != nil {
		return MountSpec{}, err
	}
	if len(spec.Branches) == 0 {
		return MountSpec{}, fmt.Errorf("%w: no branches given (want dirs=BR[=MODE]:... as the source or in -o)", ErrBadSpec)
	}
	return spec, nil
}

// HelperMain serves a mount-helper invocation (see IsHelperCall): it
// parses and validates the spec (relative branches against the working
// directory), mounts it through a daemon (or in the foreground with -f)
// and returns the exit code: 0 mounted, 2 bad spec (nothing mounted), 1
// any other failure. Errors go to stderr.
func HelperMain(args []string) int {
	if handled, code := DaemonMain(); handled {
		return code
	}
	err := helperRun(args)
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "unionctl:", err)
	if errors.Is(err, ErrBadSpec) {
		return 2
	}
	return 1
}

// helperRun parses args and mounts.
func helperRun(args []string) error {
	h, err := helperParse(args)
	if err != nil {
		return err
	}
	if len(h.positional) != 2 {
		return fmt.Errorf("%w: usage: unionctl SOURCE MOUNTPOINT -o dirs=BR[=MODE]:...[,OPTION...]", ErrBadSpec)
	}
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	if helperIsRemount(h.opts) {
		mountpoint := specAbs(h.positional[1], wd)
		if h.foreground && strings.HasPrefix(filepath.Base(args[0]), "mount.") {
			_, err := parseRemount(h.opts) // mount(8)'s "fake": check only
			return err
		}
		return helperRemount(h.opts, mountpoint)
	}
	spec, err := SpecFromArgs(h.positional[0], h.opts, wd)
	if err != nil {
		return err
	}
	mountpoint := specAbs(h.positional[1], wd)
	if h.foreground && strings.HasPrefix(filepath.Base(args[0]), "mount.") {
		// Run as /sbin/mount.TYPE, -f is mount(8)'s "fake": check only.
		return Validate(spec.Branches, mountpoint)
	}
	if h.foreground {
		return Serve(spec, mountpoint, nil)
	}
	return StartDaemon(spec, mountpoint)
}
