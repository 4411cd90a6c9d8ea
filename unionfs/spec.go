package unionfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrBadSpec marks a mount specification that cannot be mounted as given:
// a malformed dirs= list, an unknown mode or option, a missing branch,
// nested or duplicate branches, a bad mountpoint. The CLI exits 2 on it.
var ErrBadSpec = errors.New("bad mount spec")

// MountSpec is a parsed mount request: the branch stack, the union's
// options, and what only the mount itself applies.
type MountSpec struct {
	// Branches is the stack, leftmost (index 0) on top.
	Branches []Branch
	// Options are passed to Mount.
	Options Options
	// ReadOnly makes the whole union read-only (the "ro" mount option, or
	// a stack without an rw branch, as aufs allows): the mount is
	// remounted with MS_RDONLY, so the kernel refuses every write.
	ReadOnly bool
	// NoExec, NoAtime and NoDirAtime are the per-mount flags of the
	// "noexec", "noatime" and "nodiratime" options.
	NoExec, NoAtime, NoDirAtime bool
	// NoSuid and NoDev are the "nosuid" and "nodev" options ("suid" and
	// "dev" undo them). A union mounted by root honours set-user-ID bits,
	// file capabilities and device nodes unless they are given, as any
	// root mount does (a container's root file system needs them); the
	// kernel forces both on a FUSE mount made by another user.
	NoSuid, NoDev bool
}

// The cache lifetimes of the aufs udba levels. notify is the default
// where the branches can be watched, else reval (Options.RevalFallback).
// Options treats a zero timeout as "the default", so a timeout of 0 in
// a spec ("no caching") is passed as a negative one, which Options turns
// into 0 for the kernel. Not one nanosecond: the kernel rounds a timeout
// up to whole jiffies, so 1 ns keeps a name or attribute for up to a
// jiffy (4 ms at HZ=250); only 0 makes it ask every time.
const (
	udbaNoneTimeout  = 24 * time.Hour
	udbaRevalTimeout = time.Second
	specNoCache      = -time.Nanosecond
)

// specBadf returns an ErrBadSpec error with the given message.
func specBadf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadSpec, fmt.Sprintf(format, args...))
}

// ParseMode parses an aufs branch mode: rw, ro or rr, and for a
// read-only one aufs's attribute wh ("ro+wh", as Docker's aufs driver
// wrote its layers), which says whiteouts in the branch count: the
// union's ro (so "rr+wh" is ro too).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "rw":
		return RW, nil
	case "ro", "ro+wh", "rr+wh":
		return RO, nil
	case "rr":
		return RR, nil
	}
	return 0, specBadf("unknown branch mode %q (want rw, ro, ro+wh or rr)", s)
}

// ModeName is the aufs name of m: "rw", "ro" or "rr".
func ModeName(m Mode) string {
	switch m {
	case RW:
		return "rw"
	case RO:
		return "ro"
	case RR:
		return "rr"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseDirs parses the value of an aufs dirs= (or br=) option,
// "BR[=MODE]:BR[=MODE]...", leftmost on top. Without modes the first
// branch is rw and the others ro, as in aufs; a branch given without a
// mode among others that have one is ro, except the first. Relative
// paths are resolved against base. The file system is not consulted:
// see Validate.
func ParseDirs(value string, base string) ([]Branch, error) {
	if value == "" {
		return nil, specBadf("dirs: no branches given")
	}
	var branches []Branch
	for i, item := range strings.Split(value, ":") {
		if item == "" {
			return nil, specBadf("dirs=%s: empty branch at position %d", value, i+1)
		}
		path, mode := item, ""
		if j := strings.LastIndexByte(item, '='); j >= 0 {
			path, mode = item[:j], item[j+1:]
			if path == "" {
				return nil, specBadf("dirs=%s: branch %q has no path", value, item)
			}
		}
		b := Branch{Path: specAbs(path, base), Mode: RO}
		if i == 0 {
			b.Mode = RW
		}
		if mode != "" {
			m, err := ParseMode(mode)
			if err != nil {
				return nil, specBadf("branch %s: unknown mode %q (want rw, ro, ro+wh or rr)", path, mode)
			}
			b.Mode = m
		}
		branches = append(branches, b)
	}
	return branches, nil
}

// specAbs makes p absolute against base and cleans it.
func specAbs(p, base string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	return filepath.Clean(p)
}

// specIgnoredOptions are the generic options mount(8), mount.fuse3 and
// /etc/fstab pass along that mean nothing to a union: accepted, ignored.
var specIgnoredOptions = map[string]bool{
	"rw": true, "defaults": true, "exec": true,
	"auto": true, "noauto": true, "user": true, "nouser": true, "users": true,
	"owner": true, "group": true, "_netdev": true, "nofail": true,
	"async": true, "atime": true, "diratime": true, "relatime": true,
	"strictatime": true, "nostrictatime": true, "lazytime": true, "nolazytime": true,
}

// ParseOptions parses a comma-separated mount option string (as given to
// -o, by mount.fuse3 or in /etc/fstab), relative branch paths resolved
// against the working directory. See ParseOptionsAt.
func ParseOptions(opts string) (spec MountSpec, err error) {
	wd, err := os.Getwd()
	if err != nil {
		return MountSpec{}, fmt.Errorf("parse mount options: %w", err)
	}
	return ParseOptionsAt(opts, wd)
}

// ParseOptionsAt parses a comma-separated mount option string, relative
// branch paths resolved against base. Known options:
//
//	dirs=BR[=MODE]:...  (also br=, br:)  the branch stack, leftmost on top
//	udba=none|reval|notify  how soon outside changes to branches show:
//	                    never (cache 24h), after 1s, at once (cache 24h,
//	                    branches watched: Options.Notify; also aufs's
//	                    udba=fsnotify). Default: notify where the branches
//	                    can be watched (as root, no branch on NFS,
//	                    FUSE and the like, no mount inside a branch),
//	                    else reval (Options.RevalFallback)
//	entry_timeout=, attr_timeout=, negative_timeout=  cache lifetimes in
//	                    seconds ("1.5") or as a Go duration ("300ms")
//	passthrough=on|off|all  FUSE passthrough for opened files of the rw
//	                    branch (default on); all: also for lower files opened
//	                    read-only; a descriptor opened before a copy-up
//	                    then keeps reading the lower file
//	sum, nosum, wsum    statfs adds up every branch's file system (sum),
//	                    or reports the rw branch (default), as in aufs
//	fsname=NAME         the source shown in /proc/mounts
//	allow_other         let other users in (default on as root)
//	debug               log every FUSE request
//	ro                  a read-only union
//	noexec, noatime, nodiratime  per-mount flags
//
// The generic options mount(8) passes (rw, defaults, dev, suid, exec,
// auto, noauto, user, _netdev, nofail, ...) and fstab's x-* and comment=
// are accepted and ignored, and so are aufs's options this union meets
// as it is (see aufsOption); aufs options it cannot honour are refused
// saying why. Any other option is an error naming it.
// Options given later override earlier ones, except that explicit
// timeouts always win over udba.
func ParseOptionsAt(opts string, base string) (spec MountSpec, err error) {
	spec.Options = Options{
		EntryTimeout:    udbaNoneTimeout,
		AttrTimeout:     udbaNoneTimeout,
		NegativeTimeout: udbaNoneTimeout,
		Notify:          true,
		RevalFallback:   true,
		Passthrough:     true,
		FSName:          "unionctl",
		AllowOther:      os.Geteuid() == 0,
	}
	var entry, attr, negative *time.Duration
	haveDirs := false
	for _, opt := range strings.Split(opts, ",") {
		key, val, hasVal := strings.Cut(opt, "=")
		if strings.HasPrefix(opt, "br:") {
			key, val, hasVal = "br", opt[len("br:"):], true
		}
		switch {
		case opt == "":
			continue
		case key == "dirs" || key == "br":
			if haveDirs {
				return MountSpec{}, specBadf("option %s: branches given twice", key)
			}
			haveDirs = true
			if spec.Branches, err = ParseDirs(val, base); err != nil {
				return MountSpec{}, err
			}
		case key == "udba":
			var d time.Duration
			spec.Options.Notify = val == "notify" || val == "fsnotify"
			spec.Options.RevalFallback = false
			switch val {
			case "none", "notify", "fsnotify":
				d = udbaNoneTimeout
			case "reval":
				d = udbaRevalTimeout
			default:
				return MountSpec{}, specBadf("option udba=%s: want none, reval or notify", val)
			}
			spec.Options.EntryTimeout, spec.Options.AttrTimeout, spec.Options.NegativeTimeout = d, d, d
		case key == "entry_timeout" || key == "attr_timeout" || key == "negative_timeout":
			d, err := specParseTimeout(key, val)
			if err != nil {
				return MountSpec{}, err
			}
			switch key {
			case "entry_timeout":
				entry = &d
			case "attr_timeout":
				attr = &d
			default:
				negative = &d
			}
		case key == "passthrough":
			switch val {
			case "on", "true", "yes", "1":
				spec.Options.Passthrough, spec.Options.PassthroughLower = true, false
			case "all":
				spec.Options.Passthrough, spec.Options.PassthroughLower = true, true
			case "off", "false", "no", "0":
				spec.Options.Passthrough, spec.Options.PassthroughLower = false, false
			default:
				return MountSpec{}, specBadf("option passthrough=%s: want on, off or all", val)
			}
		case key == "fsname":
			if val == "" {
				return MountSpec{}, specBadf("option fsname: empty name")
			}
			spec.Options.FSName = val
		case opt == "sum" || opt == "nosum" || opt == "wsum":
			// wsum (the writable branches' sum) is the rw branch's.
			spec.Options.StatfsSum = opt == "sum"
		case opt == "allow_other":
			spec.Options.AllowOther = true
		case opt == "debug":
			spec.Options.Debug = true
		case opt == "ro":
			spec.ReadOnly = true
		case opt == "noexec":
			spec.NoExec = true
		case opt == "nosuid" || opt == "suid":
			spec.NoSuid = opt == "nosuid"
		case opt == "nodev" || opt == "dev":
			spec.NoDev = opt == "nodev"
		case opt == "noatime":
			spec.NoAtime = true
		case opt == "nodiratime":
			spec.NoDirAtime = true
		case !hasVal && specIgnoredOptions[opt]:
			continue
		case strings.HasPrefix(key, "x-") || key == "comment":
			continue
		default:
			known, err := aufsOption(opt, key, val, hasVal)
			if err != nil {
				return MountSpec{}, err
			}
			if !known {
				return MountSpec{}, specBadf("unknown mount option %q", opt)
			}
		}
	}
	if entry != nil {
		spec.Options.EntryTimeout = *entry
	}
	if attr != nil {
		spec.Options.AttrTimeout = *attr
	}
	if negative != nil {
		spec.Options.NegativeTimeout = *negative
	}
	return spec, nil
}

// specParseTimeout parses a cache timeout: seconds as a decimal number,
// or a Go duration.
func specParseTimeout(key, val string) (time.Duration, error) {
	var d time.Duration
	if secs, err := strconv.ParseFloat(val, 64); err == nil {
		d = time.Duration(secs * float64(time.Second))
	} else if d, err = time.ParseDuration(val); err != nil {
		return 0, specBadf("option %s=%s: want seconds or a duration like 500ms", key, val)
	}
	if d < 0 {
		return 0, specBadf("option %s=%s: negative timeout", key, val)
	}
	if d == 0 {
		d = specNoCache
	}
	return d, nil
}

// Validate checks a branch stack and its mountpoint against the file
// system, with an error naming the problem: a missing branch, a file as a
// branch, the same directory twice (after symlinks), one branch inside
// another, the mountpoint inside a branch or a branch inside the
// mountpoint, an unknown mode, an rw branch anywhere but on top, and a
// missing mountpoint or one that is not a directory. A stack without an
// rw branch is valid: it makes a read-only union, as in aufs.
func Validate(branches []Branch, mountpoint string) error {
	_, _, err := validateResolve(branches, mountpoint)
	return err
}

// validateResolve is Validate that also returns the canonical branches
// and mountpoint (as CanonicalBranches and specResolveDir give them),
// resolving each path once.
func validateResolve(branches []Branch, mountpoint string) ([]Branch, string, error) {
	resolved, err := specResolveBranches(branches)
	if err != nil {
		return nil, "", err
	}
	if mountpoint == "" {
		return nil, "", specBadf("no mountpoint given")
	}
	mp, err := specResolveDir("mountpoint", mountpoint)
	if err != nil {
		return nil, "", err
	}
	if err := validateMountpoint(branches, resolved, mountpoint, mp); err != nil {
		return nil, "", err
	}
	return resolved, mp, nil
}

// validateMountpoint checks the canonical mountpoint mp against the
// canonical branches resolved (branches and mountpoint as given, for
// messages).
func validateMountpoint(branches, resolved []Branch, mountpoint, mp string) error {
	for i, b := range resolved {
		switch {
		case b.Path == mp:
			return specBadf("mountpoint %s is branch %d (%s)", mountpoint, i+1, branches[i].Path)
		case specInside(mp, b.Path):
			return specBadf("mountpoint %s is inside branch %s", mountpoint, branches[i].Path)
		case specInside(b.Path, mp):
			return specBadf("branch %s is inside mountpoint %s", branches[i].Path, mountpoint)
		}
	}
	return nil
}

// ValidateBranches checks a branch stack alone: the rules of Validate
// that do not involve the mountpoint.
func ValidateBranches(branches []Branch) error {
	_, err := specResolveBranches(branches)
	return err
}

// CanonicalBranches returns branches with their paths made absolute and
// free of symlinks, which is how they are handed to Mount.
func CanonicalBranches(branches []Branch) ([]Branch, error) {
	return specResolveBranches(branches)
}

// specResolveBranches checks the stack and returns it with resolved paths.
func specResolveBranches(branches []Branch) ([]Branch, error) {
	if len(branches) == 0 {
		return nil, specBadf("no branches given (want dirs=BR[=MODE]:...)")
	}
	out := make([]Branch, len(branches))
	stats := make([]syscall.Stat_t, len(branches))
	for i, b := range branches {
		switch b.Mode {
		case RW:
			if i != 0 {
				return nil, specBadf("branch %s: only the top branch may be rw", b.Path)
			}
		case RO, RR:
		default:
			return nil, specBadf("branch %s: unknown mode %d", b.Path, b.Mode)
		}
		p, st, err := specResolveDirStat("branch", b.Path)
		if err != nil {
			return nil, err
		}
		out[i] = Branch{Path: p, Mode: b.Mode}
		stats[i] = st
	}
	// Each branch is stat'ed once and its ancestors looked up in a map, so
	// a stack of hundreds of branches validates in linear time.
	type fileID struct{ dev, ino uint64 }
	byID := make(map[fileID]int, len(out))
	byPath := make(map[string]int, len(out))
	for i, b := range out {
		id := fileID{uint64(stats[i].Dev), stats[i].Ino}
		if j, dup := byID[id]; dup {
			return nil, specBadf("branch %s given twice (as %s and %s)", out[j].Path, branches[j].Path, branches[i].Path)
		}
		byID[id] = i
		byPath[b.Path] = i
	}
	for i, b := range out {
		for dir := filepath.Dir(b.Path); ; dir = filepath.Dir(dir) {
			if j, ok := byPath[dir]; ok {
				return nil, specBadf("branch %s is inside branch %s (nested branches)", branches[i].Path, branches[j].Path)
			}
			if dir == "/" || dir == "." {
				break
			}
		}
	}
	return out, nil
}

// specResolveDir resolves p to an absolute path without symlinks and
// checks that it is a directory; what names p in errors.
func specResolveDir(what, p string) (string, error) {
	real, _, err := specResolveDirStat(what, p)
	return real, err
}

// specResolveDirStat is specResolveDir that also returns the directory's
// stat. The directory is opened (a dead FUSE mount answers stat from the
// cache, but not open); a path with symlinks has its canonical path read
// back from the descriptor. Three or four system calls, where walking the
// path for symlinks takes one per component.
func specResolveDirStat(what, p string) (string, syscall.Stat_t, error) {
	var st syscall.Stat_t
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", st, specBadf("%s %s: %v", what, p, err)
	}
	// Most paths hold no symlink: opened refusing symlinks, the clean
	// absolute path is the canonical one, and reading it back is saved.
	canonical := true
	fd, err := unix.Openat2(unix.AT_FDCWD, abs, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS,
	})
	if err == unix.ELOOP || err == unix.ENOSYS || err == unix.EXDEV {
		canonical = false
		fd, err = syscall.Open(abs, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	}
	if err == syscall.ENOTDIR {
		if _, serr := os.Stat(abs); serr == nil {
			return "", st, specBadf("%s %s: not a directory", what, p)
		}
	}
	if err != nil {
		return "", st, specResolveErr(what, p, err)
	}
	defer syscall.Close(fd)
	if err := syscall.Fstat(fd, &st); err != nil {
		return "", st, specResolveErr(what, p, err)
	}
	if canonical {
		return abs, st, nil
	}
	real, ok := fdPath(fd)
	if !ok {
		// No /proc (or an odd answer): walk the path instead.
		if real, err = filepath.EvalSymlinks(abs); err != nil {
			return "", st, specResolveErr(what, p, err)
		}
	}
	return real, st, nil
}

// specResolveErr describes why the directory p could not be used.
func specResolveErr(what, p string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return specBadf("%s %s: %v", what, p, err)
	}
	switch errno {
	case syscall.ENOENT:
		return specBadf("%s %s: no such directory", what, p)
	case syscall.ENOTCONN, syscall.ECONNABORTED:
		return specBadf("%s %s: %v (a FUSE mount whose daemon died: unionctl umount it)", what, p, errno)
	}
	return specBadf("%s %s: %v", what, p, errno)
}

// specInside says whether path lies strictly inside dir (both clean and
// absolute).
func specInside(path, dir string) bool {
	if dir == "/" {
		return path != "/"
	}
	return strings.HasPrefix(path, dir+"/")
}
