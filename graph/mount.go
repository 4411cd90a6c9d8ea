package graph

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MountAll mounts mounts at target, in order: "bind" (with "ro" and
// "rbind" options), "overlay", block filesystems ("ext4", "xfs" on a device
// or image file) and "fuse3.HELPER" (runs HELPER SOURCE TARGET -o OPTIONS
// as mount(8) would, found in PATH). A Mount's Target is a path below
// target. On failure, what was mounted is unmounted again.
//
// A Mount's Target is resolved inside target: ".." and symlinks cannot lead
// out of it. Other types ("tmpfs", "proc", ...) are passed to mount(2) with
// Source as is. Generic options (ro, rw, nosuid, nodev, noexec, noatime,
// relatime, sync, ...) become mount flags, the rest filesystem data. An
// overlay whose data does not fit a page, or that uses "lowerdir+=" options,
// is mounted with the new mount API (fsopen), one layer per option.
func MountAll(mounts []Mount, target string) error {
	const op = "mount"
	root, err := filepath.Abs(target)
	if err != nil {
		return Wrap(err, op, target)
	}
	var done []string
	for i, m := range mounts {
		path, err := mountOne(m, root)
		if err != nil {
			rerr := unmountPaths(done)
			err = fmt.Errorf("mount %d of %d (%s %q at %q): %w", i+1, len(mounts), m.Type, m.Source, m.Target, err)
			return Wrap(errors.Join(err, rerr), op, target)
		}
		done = append(done, path)
	}
	return nil
}

// unmountPaths unmounts paths in reverse order (the rollback of MountAll).
func unmountPaths(paths []string) error {
	var errs []error
	for i := len(paths) - 1; i >= 0; i-- {
		if err := unmountOne(paths[i]); err != nil {
			errs = append(errs, fmt.Errorf("roll back mount at %s: %w", paths[i], err))
		}
	}
	return errors.Join(errs...)
}

// mountOne performs m below root and returns the path it mounted at.
func mountOne(m Mount, root string) (string, error) {
	if m.Type == "" {
		return "", fmt.Errorf("no mount type: %w", ErrInvalidArgument)
	}
	opts, err := parseMountOptions(m.Options)
	if err != nil {
		return "", err
	}
	tgt, err := openTarget(root, m.Target)
	if err != nil {
		return "", err
	}
	defer tgt.Close()

	isFuse := strings.HasPrefix(m.Type, "fuse3.") || strings.HasPrefix(m.Type, "fuse.")
	switch {
	case m.Type == "bind" || opts.flags&unix.MS_BIND != 0:
		err = mountBind(m, opts, tgt)
	case m.Type == "overlay":
		err = mountOverlay(m, opts, tgt)
	case isFuse:
		err = mountFuse(m, opts, tgt)
	default:
		err = mountFilesystem(m, opts, tgt)
	}
	if err != nil {
		return "", err
	}
	if opts.propagation != 0 && !isFuse {
		if err := unix.Mount("", tgt.path, "", opts.propagation, ""); err != nil {
			_ = unmountOne(tgt.path)
			return "", fmt.Errorf("set propagation of %s: %w", tgt.path, err)
		}
	}
	return tgt.path, nil
}

// mountTarget is a directory to mount on, opened after resolving it inside
// the mount root.
type mountTarget struct {
	fd   int    // O_PATH descriptor of the directory
	path string // its absolute path, as the kernel resolved it
}

// procPath names the directory through its descriptor, for mount(2).
func (t *mountTarget) procPath() string { return fmt.Sprintf("/proc/self/fd/%d", t.fd) }

// Close closes the descriptor.
func (t *mountTarget) Close() error { return unix.Close(t.fd) }

// openTarget resolves sub (a Mount.Target) inside root without leaving it,
// like chroot would, and opens the directory it names.
func openTarget(root, sub string) (*mountTarget, error) {
	if strings.IndexByte(sub, 0) >= 0 || strings.IndexByte(root, 0) >= 0 {
		return nil, fmt.Errorf("target contains a NUL byte: %w", ErrInvalidArgument)
	}
	for _, c := range strings.Split(sub, "/") {
		if c == ".." {
			return nil, fmt.Errorf("target %q leads out of the mount root with \"..\": %w", sub, ErrInvalidArgument)
		}
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open mount root", Path: root, Err: err}
	}
	fd := rootFd
	if rel := strings.Trim(sub, "/"); rel != "" && rel != "." {
		how := unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		}
		fd, err = unix.Openat2(rootFd, rel, &how)
		unix.Close(rootFd)
		if err != nil {
			return nil, &os.PathError{Op: "open mount target", Path: filepath.Join(root, rel), Err: err}
		}
	}
	t := &mountTarget{fd: fd}
	t.path, err = os.Readlink(t.procPath())
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("resolve mount target: %w", err)
	}
	return t, nil
}

// mountOptions are a Mount's options sorted into what mount(2) takes.
type mountOptions struct {
	flags       uintptr  // MS_* flags
	propagation uintptr  // MS_PRIVATE, MS_SHARED, ... (with MS_REC), applied after
	data        []string // filesystem options
	helper      []string // options for a FUSE helper: all but mount(8)'s own
}

type flagOption struct {
	clear bool
	flag  uintptr
}

// flagOptions are the options mount(8) turns into mount flags.
var flagOptions = map[string]flagOption{
	"defaults":      {false, 0},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"nosuid":        {false, unix.MS_NOSUID},
	"suid":          {true, unix.MS_NOSUID},
	"nodev":         {false, unix.MS_NODEV},
	"dev":           {true, unix.MS_NODEV},
	"noexec":        {false, unix.MS_NOEXEC},
	"exec":          {true, unix.MS_NOEXEC},
	"sync":          {false, unix.MS_SYNCHRONOUS},
	"async":         {true, unix.MS_SYNCHRONOUS},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"noatime":       {false, unix.MS_NOATIME},
	"atime":         {true, unix.MS_NOATIME},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"diratime":      {true, unix.MS_NODIRATIME},
	"relatime":      {false, unix.MS_RELATIME},
	"norelatime":    {true, unix.MS_RELATIME},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"mand":          {false, unix.MS_MANDLOCK},
	"nomand":        {true, unix.MS_MANDLOCK},
	"silent":        {false, unix.MS_SILENT},
	"loud":          {true, unix.MS_SILENT},
	"bind":          {false, unix.MS_BIND},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
}

// propagationOptions set the propagation type after mounting.
var propagationOptions = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// userspaceOptions are mount(8)'s own and never reach the kernel or a helper.
var userspaceOptions = map[string]bool{
	"loop": true, "_netdev": true, "nofail": true, "auto": true, "noauto": true,
	"user": true, "nouser": true, "users": true, "owner": true, "noowner": true,
	"group": true, "nogroup": true,
}

func parseMountOptions(options []string) (mountOptions, error) {
	var o mountOptions
	for _, opt := range options {
		switch {
		case opt == "":
			return o, fmt.Errorf("empty mount option: %w", ErrInvalidArgument)
		case userspaceOptions[opt] || strings.HasPrefix(opt, "x-") || strings.HasPrefix(opt, "comment="):
			continue
		}
		o.helper = append(o.helper, opt)
		if f, ok := flagOptions[opt]; ok {
			if f.clear {
				o.flags &^= f.flag
			} else {
				o.flags |= f.flag
			}
			continue
		}
		if p, ok := propagationOptions[opt]; ok {
			o.propagation = p
			continue
		}
		o.data = append(o.data, opt)
	}
	return o, nil
}

// mountBind bind-mounts m.Source; read-only and other flags need a second,
// remounting call.
func mountBind(m Mount, o mountOptions, t *mountTarget) error {
	if m.Source == "" {
		return fmt.Errorf("bind mount without a source: %w", ErrInvalidArgument)
	}
	if len(o.data) > 0 {
		return fmt.Errorf("bind mount does not take options %q: %w", o.data, ErrInvalidArgument)
	}
	base := uintptr(unix.MS_BIND) | o.flags&unix.MS_REC
	if err := unix.Mount(m.Source, t.procPath(), "", base, ""); err != nil {
		return &os.PathError{Op: "bind mount " + m.Source + " on", Path: t.path, Err: err}
	}
	rest := o.flags &^ (unix.MS_BIND | unix.MS_REC)
	if rest == 0 {
		return nil
	}
	var err error
	if o.flags&unix.MS_REC != 0 {
		// Recursive bind: set the attributes on every mount of the tree.
		err = unix.MountSetattr(-1, t.path, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: mountAttrs(rest)})
	} else {
		err = unix.Mount("", t.path, "", unix.MS_REMOUNT|unix.MS_BIND|rest, "")
	}
	if err != nil {
		_ = unmountOne(t.path)
		return &os.PathError{Op: "remount bind mount with flags of " + strings.Join(o.helper, ","), Path: t.path, Err: err}
	}
	return nil
}

// mountAttrs converts MS_* flags to the MOUNT_ATTR_* of the new mount API.
func mountAttrs(flags uintptr) uint64 {
	var a uint64
	for _, p := range []struct {
		ms   uintptr
		attr uint64
	}{
		{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY},
		{unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
		{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
		{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
		{unix.MS_NOATIME, unix.MOUNT_ATTR_NOATIME},
		{unix.MS_STRICTATIME, unix.MOUNT_ATTR_STRICTATIME},
		{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
	} {
		if flags&p.ms != 0 {
			a |= p.attr
		}
	}
	return a
}

// mountFilesystem mounts a filesystem of m.Type: from a block device, from
// an image file through a loop device, or from a pseudo source ("tmpfs").
func mountFilesystem(m Mount, o mountOptions, t *mountTarget) error {
	source, shown := m.Source, m.Source
	data := strings.Join(o.data, ",")
	var st unix.Stat_t
	if m.Source != "" && unix.Stat(m.Source, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		loop, err := attachLoop(m.Source, o.flags&unix.MS_RDONLY != 0)
		if err != nil {
			return err
		}
		// The loop device detaches itself (autoclear) once it is closed
		// here and the filesystem is unmounted.
		defer loop.Close()
		source = loop.Name()
		shown = fmt.Sprintf("%s (loop device of %s)", source, m.Source)
	}
	if err := unix.Mount(source, t.procPath(), m.Type, o.flags, data); err != nil {
		return &os.PathError{Op: fmt.Sprintf("mount %s %s (data %q) on", m.Type, shown, data), Path: t.path, Err: err}
	}
	return nil
}
