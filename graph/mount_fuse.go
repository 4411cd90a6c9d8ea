package graph

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// mountFuse mounts a "fuse3.HELPER" or "fuse.HELPER" filesystem: through
// the FuseMounter registered for HELPER when it can serve (see
// RegisterFuseMounter), else as mount(8) and mount.fuse3 do: it runs
// HELPER SOURCE TARGET -o OPTIONS and waits for it to exit. The helper daemonizes and exits 0 once the
// filesystem is mounted; anything else is an error carrying its output.
func mountFuse(m Mount, o mountOptions, t *mountTarget) error {
	_, helper, _ := strings.Cut(m.Type, ".")
	if helper == "" {
		return fmt.Errorf("FUSE mount type %q names no helper: %w", m.Type, ErrInvalidArgument)
	}
	source := m.Source
	if source == "" {
		source = helper
	}
	if mounter := lookupFuseMounter(helper); mounter != nil {
		err := mounter(source, t.path, o.helper)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrMounterUnavailable) {
			return err
		}
	}
	prog, err := LookupMountHelper(helper)
	if err != nil {
		return err
	}
	args := []string{source, t.path}
	if len(o.helper) > 0 {
		args = append(args, "-o", strings.Join(o.helper, ","))
	}
	// The helper's output goes to a file, not a pipe: the daemon it
	// leaves behind may keep the descriptors open for its whole life.
	out, err := os.CreateTemp("", "unionstack-mount-helper-*.log")
	if err != nil {
		return fmt.Errorf("run mount helper %s: %w", helper, err)
	}
	defer out.Close()
	_ = os.Remove(out.Name())

	cmd := exec.Command(prog, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	runErr := cmd.Run()
	if runErr != nil {
		return fmt.Errorf("mount helper %s %s failed: %w%s", prog, strings.Join(args, " "), runErr, helperOutput(out))
	}
	mounted, err := IsMountPoint(t.path)
	if err != nil || !mounted {
		return fmt.Errorf("mount helper %s exited 0 but nothing is mounted at %s (err %v)%s", prog, t.path, err, helperOutput(out))
	}
	return nil
}

// helperOutput returns what a mount helper wrote, for an error message.
func helperOutput(f *os.File) string {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return " (no output)"
	}
	return ": " + string(b)
}
