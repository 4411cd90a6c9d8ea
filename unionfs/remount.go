package unionfs

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ParseBranchArg parses DIR[=MODE], a branch to add to a live stack:
// read-only (ro) unless MODE says otherwise, the path as given.
func ParseBranchArg(s string) (Branch, error) {
	b := Branch{Path: s, Mode: RO}
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		m, err := ParseMode(s[i+1:])
		if err != nil {
			return Branch{}, fmt.Errorf("branch %s: %w", s, err)
		}
		b.Path, b.Mode = s[:i], m
	}
	if b.Path == "" {
		return Branch{}, specBadf("branch %q: empty path", s)
	}
	return b, nil
}

// remountPlan is what `mount -o remount,...` asks of a live union: the
// edits of its stack in the order given, and the changes to the mount's
// flags.
type remountPlan struct {
	edits   []BranchEdit
	on, off uintptr // MS_RDONLY, MS_NOSUID, ... to set and to clear
}

// flag records that flag is to be set (on) or cleared; the last word wins.
func (p *remountPlan) flag(flag uintptr, on bool) {
	if on {
		p.on |= flag
		p.off &^= flag
	} else {
		p.off |= flag
		p.on &^= flag
	}
}

// remountKernelOptions are the FUSE options mount(8) repeats from the
// mount's entry in mountinfo; they are the kernel's and stay as they are.
var remountKernelOptions = map[string]bool{
	"user_id": true, "group_id": true, "default_permissions": true, "allow_other": true,
	"max_read": true, "blksize": true, "fd": true, "rootmode": true,
}

// remountFlags are the per-mount flags a remount sets (true) or clears.
var remountFlags = map[string]struct {
	flag uintptr
	set  bool
}{
	"ro": {unix.MS_RDONLY, true}, "rw": {unix.MS_RDONLY, false},
	"nosuid": {unix.MS_NOSUID, true}, "suid": {unix.MS_NOSUID, false},
	"nodev": {unix.MS_NODEV, true}, "dev": {unix.MS_NODEV, false},
	"noexec": {unix.MS_NOEXEC, true}, "exec": {unix.MS_NOEXEC, false},
	"noatime": {unix.MS_NOATIME, true}, "atime": {unix.MS_NOATIME, false},
	"nodiratime": {unix.MS_NODIRATIME, true}, "diratime": {unix.MS_NODIRATIME, false},
	"relatime": {unix.MS_RELATIME, true}, "norelatime": {unix.MS_RELATIME, false},
	"strictatime": {unix.MS_STRICTATIME, true}, "nostrictatime": {unix.MS_STRICTATIME, false},
}

// helperIsRemount says whether the option strings opts ask for a remount.
func helperIsRemount(opts []string) bool {
	for _, o := range opts {
		for _, opt := range strings.Split(o, ",") {
			if opt == "remount" {
				return true
			}
		}
	}
	return false
}

// parseRemount reads the options of `mount -o remount,...`, as mount(8)
// hands them to the helper: the mount's own options from mountinfo and
// fstab merged with the ones given. As aufs's remount did, it takes
// add:INDEX:DIR[=MODE] (also ins:, and with = for the first :),
// append:DIR[=MODE], prepend:DIR[=MODE], del:DIR and mod:DIR=MODE (ro or
// rr), applied in order, and the per-mount flags (ro/rw, nosuid, nodev,
// noexec, the atime ones). What the union was mounted with and keeps
// (dirs=, udba=, timeouts, passthrough, the aufs options it meets,
// fsname, ...) is accepted as mount(8) repeats it and left as it is;
// aufs's idel: and imod: (branches by index) are refused.
func parseRemount(opts []string) (remountPlan, error) {
	var p remountPlan
	for _, o := range opts {
		for _, opt := range strings.Split(o, ",") {
			key, _, _ := strings.Cut(opt, "=")
			verb, arg, hasArg := opt, "", false
			if i := strings.IndexAny(opt, ":="); i >= 0 {
				verb, arg, hasArg = opt[:i], opt[i+1:], true
			}
			if f, ok := remountFlags[opt]; ok {
				p.flag(f.flag, f.set)
				continue
			}
			if hasArg && aufsBranchEdits[verb] {
				e, err := parseRemountEdit(verb, arg)
				if err != nil {
					return p, err
				}
				p.edits = append(p.edits, e)
				continue
			}
			switch {
			case opt == "" || opt == "remount" || remountKernelOptions[key]:
				continue
			case aufsBranchEdits[opt]:
				return p, specBadf("remount option %s: which branch?", opt)
			}
			// The rest must be what a mount takes; it stays as mounted.
			if _, err := ParseOptionsAt(opt, "/"); err != nil {
				return p, err
			}
		}
	}
	return p, nil
}

// parseRemountEdit parses the argument of one branch edit: verb is add,
// ins, append, prepend, del, mod, idel or imod.
func parseRemountEdit(verb, arg string) (BranchEdit, error) {
	switch verb {
	case "add", "ins":
		idx, dir, ok := strings.Cut(arg, ":")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || n < 0 {
			return BranchEdit{}, specBadf("remount option %s:%s: want %s:INDEX:DIR[=MODE]", verb, arg, verb)
		}
		b, err := ParseBranchArg(dir)
		return BranchEdit{Op: EditAdd, Branch: b, Index: n}, err
	case "append", "prepend":
		b, err := ParseBranchArg(arg)
		idx := -1
		if verb == "prepend" {
			idx = 0
		}
		return BranchEdit{Op: EditAdd, Branch: b, Index: idx}, err
	case "del":
		if arg == "" {
			return BranchEdit{}, specBadf("remount option del: which branch?")
		}
		return BranchEdit{Op: EditDel, Branch: Branch{Path: arg}}, nil
	case "mod":
		b, err := ParseBranchArg(arg)
		if err == nil && !strings.Contains(arg, "=") {
			err = specBadf("remount option mod:%s: want mod:DIR=MODE", arg)
		}
		return BranchEdit{Op: EditMod, Branch: b}, err
	}
	return BranchEdit{}, specBadf("remount option %s:%s: branches are named by path (add:, del:, mod:)", verb, arg)
}

// helperRemount serves `mount -o remount,...` of the union at mountpoint
// (see parseRemount): its daemon makes the edits all or none
// (ControlEditBranches), so a bad one changes nothing, then the flags are
// set by a bind remount of the mountpoint.
func helperRemount(opts []string, mountpoint string) error {
	p, err := parseRemount(opts)
	if err != nil {
		return err
	}
	if !IsMounted(mountpoint) {
		return specBadf("remount %s: not a unionctl mount", mountpoint)
	}
	if len(p.edits) > 0 {
		if err := ControlEditBranches(mountpoint, p.edits); err != nil {
			return fmt.Errorf("remount %s: %w", mountpoint, err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mountpoint, &st); err != nil {
		return fmt.Errorf("remount %s: %w", mountpoint, err)
	}
	// statfs's ST_* flags have the values of the MS_* ones they report.
	const perMount = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME
	now := uintptr(st.Flags) & perMount
	want := now&^p.off | p.on
	if want == now {
		return nil
	}
	if err := unix.Mount("", mountpoint, "", unix.MS_REMOUNT|unix.MS_BIND|want, ""); err != nil {
		return fmt.Errorf("remount %s: set the mount's flags: %w", mountpoint, err)
	}
	return nil
}
