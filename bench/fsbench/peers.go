package fsbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Names of the filesystems compared, in report order.
const (
	Overlay       = "overlay"
	FuseOverlayFS = "fuse-overlayfs"
	UnionFSFuse   = "unionfs-fuse"
	UnionFS       = "unionfs"
	// UnionFSCached is unionfs mounted with udba=none: names and
	// attributes cached as long as the kernel likes, as fuse-overlayfs
	// does by default (and the fuse graph driver mounts its layers).
	UnionFSCached = "unionfs-udba-none"
	// UnionFSFast is unionfs in its fastest mode that still shows
	// outside changes to the read-only branches: udba=notify (cached for
	// a day, branches watched) and passthrough=all (lower files read by
	// the kernel; a descriptor opened before a copy-up keeps reading the
	// lower file, where kernel overlayfs's read(2) follows the copy-up).
	UnionFSFast = "unionfs-fast"
)

// mountTimeout is how long a FUSE daemon may take to show its mount.
const mountTimeout = 30 * time.Second

// FS is a union filesystem under test.
type FS interface {
	// Name is the filesystem's name in reports.
	Name() string
	// Available returns why the filesystem cannot run on this host, or nil.
	Available() error
	// Mount mounts b.Upper (writable) over b.Lower at b.Mnt and returns
	// once the mount is ready.
	Mount(ctx context.Context, b Branches) (Mounted, error)
}

// Mounted is a mounted union.
type Mounted interface {
	// Unmount unmounts the union and ends its daemon, if any.
	Unmount() error
}

// Daemon is a Mounted served by a process of its own, whose memory Run
// reads after the warm stat walk.
type Daemon interface {
	// DaemonPid is the pid of the process serving the mount, 0 if unknown.
	DaemonPid() int
}

// OverlayFS is kernel overlayfs (mount -t overlay).
type OverlayFS struct{}

// Name returns "overlay".
func (OverlayFS) Name() string { return Overlay }

// Available checks that the kernel knows overlayfs.
func (OverlayFS) Available() error {
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return err
	}
	if !bytes.Contains(data, []byte("\toverlay\n")) {
		return errors.New("kernel has no overlay filesystem (modprobe overlay)")
	}
	return nil
}

// Mount mounts an overlay with lowerdir, upperdir and workdir.
func (OverlayFS) Mount(ctx context.Context, b Branches) (Mounted, error) {
	opts := "lowerdir=" + b.Lower + ",upperdir=" + b.Upper + ",workdir=" + b.Work
	if err := unix.Mount("overlay", b.Mnt, "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("mount overlay %s (%s): %w", b.Mnt, opts, err)
	}
	return unmountFunc(func() error { return unmount(b.Mnt) }), nil
}

// unmountFunc adapts a function to Mounted.
type unmountFunc func() error

// Unmount calls f.
func (f unmountFunc) Unmount() error { return f() }

// FuseDaemon is a FUSE union filesystem served by an external program run
// in the foreground as a child process: fuse-overlayfs or unionfs-fuse.
type FuseDaemon struct {
	// FSName is the name in reports.
	FSName string
	// Program is the executable, looked up in PATH.
	Program string
	// Args returns the arguments that mount b (with -f: foreground).
	Args func(b Branches) []string
}

// NewFuseOverlayFS returns fuse-overlayfs (Debian package fuse-overlayfs)
// with its default options.
func NewFuseOverlayFS() *FuseDaemon {
	return &FuseDaemon{FSName: FuseOverlayFS, Program: "fuse-overlayfs", Args: func(b Branches) []string {
		return []string{"-f", "-o", "lowerdir=" + b.Lower + ",upperdir=" + b.Upper + ",workdir=" + b.Work, b.Mnt}
	}}
}

// NewUnionFSFuse returns unionfs-fuse (Debian package unionfs-fuse) with
// copy-on-write on (-o cow, needed for copy-up and whiteouts). Its
// hide_meta_files option is not used: the Debian build then prints debug
// lines for every directory entry read, which would slow it unfairly; the
// .unionfs-fuse meta directory it makes at the root is ignored instead.
func NewUnionFSFuse() *FuseDaemon {
	return &FuseDaemon{FSName: UnionFSFuse, Program: "unionfs-fuse", Args: func(b Branches) []string {
		return []string{"-f", "-o", "cow", b.Upper + "=RW:" + b.Lower + "=RO", b.Mnt}
	}}
}

// Name returns the filesystem's name.
func (d *FuseDaemon) Name() string { return d.FSName }

// Available checks that the program is in PATH and /dev/fuse exists.
func (d *FuseDaemon) Available() error {
	if _, err := exec.LookPath(d.Program); err != nil {
		return fmt.Errorf("%s not in PATH (install the Debian package %s)", d.Program, d.Program)
	}
	return fuseAvailable()
}

// fuseAvailable checks for /dev/fuse.
func fuseAvailable() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no FUSE: %w", err)
	}
	return nil
}

// Mount starts the daemon and waits until its mount is there.
func (d *FuseDaemon) Mount(ctx context.Context, b Branches) (Mounted, error) {
	log, err := os.OpenFile(b.Log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", d.FSName, err)
	}
	defer log.Close()
	cmd := exec.Command(d.Program, d.Args(b)...)
	cmd.Stdout, cmd.Stderr = log, log
	// Own process group: a Ctrl-C at the terminal reaches us, not the
	// daemon; we unmount it. Pdeathsig ends it if we die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", d.FSName, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	m := &daemonMount{mnt: b.Mnt, cmd: cmd, exited: exited}
	isFuse := func(t string) bool { return strings.HasPrefix(t, "fuse") }
	if err := waitMounted(ctx, b.Mnt, isFuse, exited, mountTimeout); err != nil {
		m.Unmount()
		if waitErr != nil {
			err = fmt.Errorf("%w (%v)", err, waitErr)
		}
		return nil, fmt.Errorf("mount %s at %s: %w; log: %s", d.FSName, b.Mnt, err, logTail(b.Log))
	}
	return m, nil
}

// daemonMount is a mount served by a child process.
type daemonMount struct {
	mnt    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Unmount unmounts, which ends the daemon; a daemon that does not end in
// time is killed.
func (m *daemonMount) Unmount() error {
	err := unmount(m.mnt)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
		if err == nil {
			err = fmt.Errorf("unmount %s: daemon did not exit, killed", m.mnt)
		}
	}
	return err
}

// DaemonPid returns the pid of the child serving the mount.
func (m *daemonMount) DaemonPid() int { return m.cmd.Process.Pid }

// logTail returns the last lines of a daemon log, for error messages.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return "(empty)"
	}
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return strings.TrimSpace(string(data))
}
