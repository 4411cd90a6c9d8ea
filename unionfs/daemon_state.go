package unionfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// StateRoot is where mount daemons record themselves: one directory per
// mountpoint, named after it, holding the daemon's pid, its control
// socket and its log.
var StateRoot = "/run/unionctl"

// ErrNotUnionMount is returned for a path that is not a unionctl mount.
var ErrNotUnionMount = errors.New("not a unionctl mount")

// daemonState is the state directory of the daemon serving one mountpoint.
type daemonState struct {
	mountpoint string // canonical mountpoint
	dir        string
}

// maxSocketPath is the longest path a unix socket may have (sun_path, 108
// bytes with the terminating NUL).
const maxSocketPath = 107

// daemonStateFor returns the state directory of a canonical mountpoint.
func daemonStateFor(mountpoint string) daemonState {
	name := daemonEscapePath(mountpoint)
	dir := filepath.Join(StateRoot, name)
	if len(filepath.Join(dir, "control.sock")) > maxSocketPath {
		sum := sha256.Sum256([]byte(mountpoint))
		keep := maxSocketPath - len(StateRoot) - len("/~/control.sock") - 16
		if keep > len(name) {
			keep = len(name)
		}
		if keep < 0 {
			keep = 0
		}
		dir = filepath.Join(StateRoot, name[:keep]+"~"+hex.EncodeToString(sum[:8]))
	}
	return daemonState{mountpoint: mountpoint, dir: dir}
}

// daemonEscapePath escapes an absolute path into one file name, the way
// systemd-escape --path does: slashes become dashes, and anything but
// letters, digits, ':', '_' and '.' (and a leading '.') becomes \xHH.
func daemonEscapePath(p string) string {
	p = strings.Trim(filepath.Clean(p), "/")
	if p == "" {
		return "-"
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c == '.' && i == 0,
			!(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '.'):
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func (s daemonState) pidPath() string        { return filepath.Join(s.dir, "pid") }
func (s daemonState) socketPath() string     { return filepath.Join(s.dir, "control.sock") }
func (s daemonState) logPath() string        { return filepath.Join(s.dir, "daemon.log") }
func (s daemonState) mountpointPath() string { return filepath.Join(s.dir, "mountpoint") }

// exists says whether the state directory is there.
func (s daemonState) exists() bool {
	_, err := os.Stat(s.dir)
	return err == nil
}

// pid returns the recorded daemon pid, or 0.
func (s daemonState) pid() int {
	data, err := os.ReadFile(s.pidPath())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// livePid returns the recorded daemon pid if that process is alive, or 0.
func (s daemonState) livePid() int {
	pid := s.pid()
	if pid == 0 || !daemonProcessAlive(pid) {
		return 0
	}
	return pid
}

// daemonProcessAlive says whether process pid exists (and is no zombie).
func daemonProcessAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(data), ')'); i >= 0 && i+2 < len(data) {
		return data[i+2] != 'Z'
	}
	return true
}

// claim creates the state directory for a new daemon, clearing what a dead
// one left; self is the pid allowed to be recorded already (0: none).
func (s daemonState) claim(self int) error {
	if pid := s.livePid(); pid != 0 && pid != self {
		if _, mounted, _ := daemonFindMountIn(pid, s.mountpoint); mounted {
			return fmt.Errorf("%w: %s is already a unionctl mount (daemon pid %d); unmount it first", ErrBadSpec, s.mountpoint, pid)
		}
		// Its mount is gone (umount(8)): the daemon is on its way out.
		if !umountWaitExit(pid) {
			return fmt.Errorf("%s: the daemon of an earlier mount (pid %d) lost its mount but does not exit", s.mountpoint, pid)
		}
	}
	if self == 0 {
		if err := os.RemoveAll(s.dir); err != nil {
			return fmt.Errorf("clear stale state %s: %w", s.dir, err)
		}
	} else {
		_ = os.Remove(s.socketPath())
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create state dir %s: %w", s.dir, err)
	}
	if err := os.WriteFile(s.mountpointPath(), []byte(s.mountpoint+"\n"), 0o600); err != nil {
		return fmt.Errorf("write state %s: %w", s.mountpointPath(), err)
	}
	return nil
}

// writePid records pid as the daemon's.
func (s daemonState) writePid(pid int) error {
	tmp := s.pidPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write state %s: %w", s.pidPath(), err)
	}
	if err := os.Rename(tmp, s.pidPath()); err != nil {
		return fmt.Errorf("write state %s: %w", s.pidPath(), err)
	}
	return nil
}

// remove deletes the state directory.
func (s daemonState) remove() error {
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove state %s: %w", s.dir, err)
	}
	return nil
}

// daemonCanonicalMountpoint makes mountpoint absolute and free of
// symlinks. A dead FUSE mount cannot be stat'ed (ENOTCONN), so when the
// full path does not resolve only its parent is.
func daemonCanonicalMountpoint(mountpoint string) (string, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", mountpoint, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", fmt.Errorf("%w: mountpoint %s: %v", ErrNotUnionMount, mountpoint, errors.Unwrap(err))
	}
	return filepath.Join(parent, filepath.Base(abs)), nil
}
