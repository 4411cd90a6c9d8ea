package fsbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/unionstack/unionstack/unionfs"
)

// UnionctlFS is unionstack's unionfs mounted by the real CLI and daemon:
// `unionctl mount dirs=UPPER=rw:LOWER=ro MNT`, ended by `unionctl umount MNT`.
type UnionctlFS struct {
	// Exe is the path of the unionctl binary.
	Exe string
	// Opts, when not empty, are passed as `-o Opts`.
	Opts string
	// Label is the name it is reported under ("unionfs" when empty).
	Label string
}

// Name returns the Label, or "unionfs".
func (u *UnionctlFS) Name() string {
	if u.Label != "" {
		return u.Label
	}
	return UnionFS
}

// Available checks that the binary runs and FUSE is there.
func (u *UnionctlFS) Available() error {
	if u.Exe == "" {
		return errors.New("no unionctl binary given")
	}
	if _, err := exec.LookPath(u.Exe); err != nil {
		return fmt.Errorf("unionctl binary %s: %w", u.Exe, err)
	}
	return fuseAvailable()
}

// Mount runs `unionctl mount`, which returns once the mount is ready and
// leaves its daemon serving it.
func (u *UnionctlFS) Mount(ctx context.Context, b Branches) (Mounted, error) {
	if strings.ContainsAny(b.Upper+b.Lower, ":=,") {
		return nil, fmt.Errorf("mount %s: branch paths %s, %s hold one of ':', '=' or ','", u.Name(), b.Upper, b.Lower)
	}
	args := []string{"mount"}
	if u.Opts != "" {
		args = append(args, "-o", u.Opts)
	}
	args = append(args, "dirs="+b.Upper+"=rw:"+b.Lower+"=ro", b.Mnt)
	if err := u.run(ctx, b.Log, args...); err != nil {
		if t, _ := mountType(b.Mnt); t != "" {
			unmount(b.Mnt)
		}
		return nil, err
	}
	if t, err := mountType(b.Mnt); err != nil || !strings.HasPrefix(t, "fuse") {
		return nil, fmt.Errorf("mount %s at %s: unionctl mount succeeded but no FUSE mount is there (%q, %v)", u.Name(), b.Mnt, t, err)
	}
	return &unionctlMount{u: u, b: b, pid: unionfs.DaemonPid(b.Mnt)}, nil
}

// unionctlMount is a mount served by the daemon `unionctl mount` left.
type unionctlMount struct {
	u   *UnionctlFS
	b   Branches
	pid int // recorded by the daemon in its state directory
}

// DaemonPid returns the pid of the daemon serving the mount.
func (m *unionctlMount) DaemonPid() int { return m.pid }

// Unmount runs `unionctl umount`, and unmounts whatever it left.
func (m *unionctlMount) Unmount() error {
	err := m.u.run(context.Background(), m.b.Log, "umount", m.b.Mnt)
	if t, _ := mountType(m.b.Mnt); t != "" {
		if uerr := unmount(m.b.Mnt); err == nil {
			err = fmt.Errorf("umount %s: unionctl umount left the mount: %v", m.b.Mnt, uerr)
		}
	}
	return err
}

// run runs unionctl with args in its own process group, its output going
// to the file logPath (not a pipe: a daemon it leaves behind may keep its
// stdout open).
func (u *UnionctlFS) run(ctx context.Context, logPath string, args ...string) error {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("%s %s: %w", u.Exe, args[0], err)
	}
	defer log.Close()
	ctx, cancel := context.WithTimeout(ctx, mountTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, u.Exe, args...)
	// argv[0] "unionctl": a binary that is unionctl under another name
	// (a test binary standing in for it) dispatches on it.
	cmd.Args[0] = "unionctl"
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w; log: %s", u.Exe, strings.Join(args, " "), err, logTail(logPath))
	}
	return nil
}
