package unionfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"

	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// daemonEnv marks a process re-executed to become a mount daemon; its
// value is the JSON daemonRequest.
const daemonEnv = "_UNIONCTL_MOUNT_DAEMON"

// daemonReadyFD is the descriptor on which a daemon child reports
// readiness: "ok", or an exit code and the error text.
const daemonReadyFD = 3

// daemonReadyTimeout bounds how long the parent waits for the mount.
const daemonReadyTimeout = 2 * time.Minute

// daemonRequest is what the parent hands the daemon child.
type daemonRequest struct {
	Mountpoint string    `json:"mountpoint"`
	Spec       MountSpec `json:"spec"`
}

// StartDaemon mounts spec at mountpoint in a background daemon and returns
// once the mount serves, or with the daemon's error. The daemon is this
// executable (/proc/self/exe) run again with a marker in its environment:
// the program must call DaemonMain first thing. The spec is validated here,
// before anything starts, so that a bad spec (ErrBadSpec) mounts nothing.
// A mount that runs with udba=reval where the default asked for
// udba=notify says so, and why, on standard error (the daemon's own log
// is not in sight).
func StartDaemon(spec MountSpec, mountpoint string) error {
	mp, branches, err := daemonPrepare(spec, mountpoint)
	if err != nil {
		return err
	}
	spec.Branches = branches
	st := daemonStateFor(mp)
	if err := st.claim(0); err != nil {
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	if err := daemonStart(spec, mp, st); err != nil {
		_ = st.remove()
		var reported daemonReportedError
		if errors.As(err, &reported) {
			return reported.error // it names the mountpoint already
		}
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	if why, err := ControlFallback(mp); err == nil && why != "" {
		fmt.Fprintf(os.Stderr, "unionctl: mount %s: udba=reval (outside changes to the branches show within %v): %s\n", mountpoint, udbaRevalTimeout, why)
	}
	return nil
}

// daemonReportedError is a failure the daemon child reported on its
// readiness pipe, worded in full (it names the mountpoint).
type daemonReportedError struct{ error }

// daemonPrepare validates spec and returns the canonical mountpoint and
// branches.
func daemonPrepare(spec MountSpec, mountpoint string) (string, []Branch, error) {
	branches, mp, err := validateResolve(spec.Branches, mountpoint)
	if err != nil {
		return "", nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	return mp, branches, nil
}

// daemonStart forks the daemon child and waits for its readiness report.
func daemonStart(spec MountSpec, mp string, st daemonState) error {
	payload, err := json.Marshal(daemonRequest{Mountpoint: mp, Spec: spec})
	if err != nil {
		return err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	logf, err := os.OpenFile(st.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{os.Args[0]}
	cmd.Env = append(os.Environ(), daemonEnv+"="+string(payload))
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.ExtraFiles = []*os.File{w} // fd 3 = daemonReadyFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start daemon: %w", err)
	}
	w.Close()

	report := make(chan []byte, 1)
	go func() {
		data, _ := io.ReadAll(r)
		report <- data
	}()
	var msg string
	select {
	case data := <-report:
		msg = strings.TrimSpace(string(data))
	case <-time.After(daemonReadyTimeout):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("daemon (pid %d) not ready after %v; killed it", cmd.Process.Pid, daemonReadyTimeout)
	}
	if msg == "ok" {
		// Reap the daemon when it ends, should this process live longer.
		go func() { _ = cmd.Wait() }()
		return nil
	}
	werr := cmd.Wait()
	if code, text, ok := strings.Cut(msg, " "); ok && (code == "1" || code == "2") {
		if code == "2" {
			return daemonReportedError{fmt.Errorf("%w: %s", ErrBadSpec, strings.TrimPrefix(text, ErrBadSpec.Error()+": "))}
		}
		return daemonReportedError{errors.New(text)}
	}
	logTail, _ := os.ReadFile(st.logPath())
	return fmt.Errorf("daemon exited (%v) before the mount was ready: %s", werr, daemonTail(string(logTail), 2000))
}

// daemonTail returns the last n bytes of s.
func daemonTail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	if s == "" {
		return "(no log output)"
	}
	return s
}

// DaemonMain serves a mount daemon when this process was started as one
// by StartDaemon (handled is then true, and code is the exit code to exit
// with, after the mount ended). Call it first thing in main, and in
// TestMain of tests whose binary stands in for unionctl.
func DaemonMain() (handled bool, code int) {
	payload, ok := os.LookupEnv(daemonEnv)
	if !ok {
		return false, 0
	}
	os.Unsetenv(daemonEnv)
	daemonSetName("unionctl")
	ready := os.NewFile(daemonReadyFD, "ready")
	report := func(err error) {
		if ready == nil {
			return
		}
		msg := "ok"
		if err != nil {
			code := "1"
			if errors.Is(err, ErrBadSpec) {
				code = "2"
			}
			msg = code + " " + err.Error()
		}
		_, _ = ready.WriteString(msg + "\n")
		ready.Close()
		ready = nil
	}
	var req daemonRequest
	if err := json.Unmarshal([]byte(payload), &req); err != nil {
		report(fmt.Errorf("mount daemon: bad request: %w", err))
		return true, 1
	}
	signal.Ignore(syscall.SIGHUP)
	if err := Serve(req.Spec, req.Mountpoint, report); err != nil {
		fmt.Fprintln(os.Stderr, "unionctl daemon:", err)
		report(err) // no-op when readiness was reported already
		if errors.Is(err, ErrBadSpec) {
			return true, 2
		}
		return true, 1
	}
	return true, 0
}

// Serve mounts spec at mountpoint in this process, records it in the
// state directory, answers the control socket, and serves until the mount
// is unmounted (umount, unionctl umount) or SIGTERM/SIGINT arrives, which
// unmount it. ready, if not nil, is called once: with nil when the mount
// serves, or with the error that stopped it.
func Serve(spec MountSpec, mountpoint string, ready func(error)) error {
	if ready == nil {
		ready = func(error) {}
	}
	mp, branches, err := daemonPrepare(spec, mountpoint)
	if err != nil {
		ready(err)
		return err
	}
	// Catch the signals before there is a mount: killed by one while it
	// serves, the process could hang at exit on a file of its own mount
	// (go-fuse's poll hack holds one open during Mount).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer func() { signal.Stop(sigs); close(sigs) }()
	st := daemonStateFor(mp)
	if err := st.claim(os.Getpid()); err != nil {
		err = fmt.Errorf("mount %s: %w", mountpoint, err)
		ready(err)
		return err
	}
	if err := st.writePid(os.Getpid()); err != nil {
		_ = st.remove()
		ready(err)
		return err
	}
	srv, err := Mount(branches, mp, spec.Options)
	if err != nil { // Mount's error names the mountpoint
		_ = st.remove()
		ready(err)
		return err
	}
	unmount := func() error { return daemonUnmount(srv, mp) }
	fail := func(err error) error {
		_ = srv.Unmount()
		_ = st.remove()
		err = fmt.Errorf("mount %s: %w", mountpoint, err)
		ready(err)
		return err
	}
	if err := daemonApplyFlags(spec, branches, mp); err != nil {
		return fail(err)
	}
	// A request to unmount (unionctl umount) fails on a busy mount
	// rather than detach it; signals detach a busy mount lazily.
	ctl, err := startControlServer(st.socketPath(), srv, mp, srv.Unmount)
	if err != nil {
		return fail(err)
	}
	go func() {
		for sig := range sigs {
			if err := unmount(); err != nil {
				fmt.Fprintf(os.Stderr, "unionctl daemon: %v: unmount %s: %v\n", sig, mp, err)
			}
		}
	}()
	ready(nil)
	srv.Wait()
	ctl.close()
	_ = st.remove()
	return nil
}

// daemonUnmount ends the mount: a clean unmount, or when the mount is
// busy a lazy one (the kernel detaches it now and ends the session when
// the last user lets go, and then Wait returns).
func daemonUnmount(srv *Server, mp string) error {
	err := srv.Unmount()
	if err == nil {
		return nil
	}
	if lerr := unix.Unmount(mp, unix.MNT_DETACH); lerr != nil {
		return fmt.Errorf("%v; lazy unmount: %w", err, lerr)
	}
	return nil
}

// daemonApplyFlags applies the per-mount flags the spec asks for (ro, and
// ro for a stack without an rw branch; noexec, noatime, nodiratime,
// nosuid, nodev) by a bind remount of the mount, keeping the flags it
// has.
func daemonApplyFlags(spec MountSpec, branches []Branch, mp string) error {
	spec.Branches = branches
	want := specMountFlags(spec)
	if want == 0 {
		return nil
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mp, &sfs); err != nil {
		return fmt.Errorf("statfs %s: %w", mp, err)
	}
	have := uintptr(0)
	for st, ms := range map[int64]uintptr{
		unix.ST_RDONLY: unix.MS_RDONLY, unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV,
		unix.ST_NOEXEC: unix.MS_NOEXEC, unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME,
		unix.ST_RELATIME: unix.MS_RELATIME,
	} {
		if sfs.Flags&st != 0 {
			have |= ms
		}
	}
	if err := unix.Mount("", mp, "", unix.MS_REMOUNT|unix.MS_BIND|have|want, ""); err != nil {
		return fmt.Errorf("remount %s with flags %#x: %w", mp, want, err)
	}
	return nil
}

// specMountFlags are the per-mount flags (MS_*) spec asks for: ro, and
// ro for a stack without an rw branch; noexec, noatime, nodiratime,
// nosuid, nodev.
func specMountFlags(spec MountSpec) uintptr {
	var f uintptr
	if spec.ReadOnly || !daemonHasRW(spec.Branches) {
		f |= unix.MS_RDONLY
	}
	if spec.NoExec {
		f |= unix.MS_NOEXEC
	}
	if spec.NoAtime {
		f |= unix.MS_NOATIME
	}
	if spec.NoDirAtime {
		f |= unix.MS_NODIRATIME
	}
	if spec.NoSuid {
		f |= unix.MS_NOSUID
	}
	if spec.NoDev {
		f |= unix.MS_NODEV
	}
	return f
}

// daemonHasRW says whether the stack has a writable branch.
func daemonHasRW(branches []Branch) bool {
	for _, b := range branches {
		if b.Mode == RW {
			return true
		}
	}
	return false
}

// daemonSetName names the process (as ps shows it) rather than "exe", the
// name it got from /proc/self/exe.
func daemonSetName(name string) {
	b := append([]byte(name), 0)
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0)
}
