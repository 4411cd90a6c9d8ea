package unionfs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// controlTimeout bounds one control exchange; unmounting and branch
// changes on a busy mount can take a while.
const controlTimeout = 2 * time.Minute

// controlCall sends one request to the daemon serving mountpoint.
func controlCall(mountpoint string, req controlRequest) (controlResponse, error) {
	mp, err := daemonCanonicalMountpoint(mountpoint)
	if err != nil {
		return controlResponse{}, err
	}
	st := daemonStateFor(mp)
	if st.livePid() == 0 {
		return controlResponse{}, fmt.Errorf("%w: %s (no live unionctl daemon serves it)", ErrNotUnionMount, mountpoint)
	}
	return controlDial(st.socketPath(), req)
}

// controlDial sends one request on the socket at path.
func controlDial(path string, req controlRequest) (controlResponse, error) {
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return controlResponse{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(controlTimeout))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return controlResponse{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return controlResponse{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	var resp controlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return controlResponse{}, fmt.Errorf("control socket %s: bad response: %w", path, err)
	}
	if !resp.OK {
		if resp.BadSpec {
			return resp, &controlError{msg: resp.Error, bad: true}
		}
		return resp, &controlError{msg: resp.Error}
	}
	return resp, nil
}

// controlError is an error reported by the daemon; it is ErrBadSpec when
// the request was wrong.
type controlError struct {
	msg string
	bad bool
}

func (e *controlError) Error() string { return e.msg }

// Is makes errors.Is(err, ErrBadSpec) hold for rejected requests.
func (e *controlError) Is(target error) bool { return e.bad && target == ErrBadSpec }

// controlFromWire converts a stack from the wire.
func controlFromWire(cbs []controlBranch) ([]Branch, error) {
	out := make([]Branch, len(cbs))
	for i, cb := range cbs {
		m, err := ParseMode(cb.Mode)
		if err != nil {
			return nil, err
		}
		out[i] = Branch{Path: cb.Path, Mode: m}
	}
	return out, nil
}

// ControlBranches returns the branch stack of the live mount at
// mountpoint, top first, as its daemon reports it.
func ControlBranches(mountpoint string) ([]Branch, error) {
	resp, err := controlCall(mountpoint, controlRequest{Op: "ls"})
	if err != nil {
		return nil, fmt.Errorf("list branches of %s: %w", mountpoint, err)
	}
	return controlFromWire(resp.Branches)
}

// ControlFallback asks the daemon of the mount at mountpoint why it runs
// with udba=reval where the default asked for udba=notify ("" when it
// does not; see Options.RevalFallback).
func ControlFallback(mountpoint string) (string, error) {
	resp, err := controlCall(mountpoint, controlRequest{Op: "ls"})
	if err != nil {
		return "", fmt.Errorf("ask %s: %w", mountpoint, err)
	}
	return resp.Fallback, nil
}

// ControlAddBranch adds branch b to the live mount at mountpoint at index
// (0 = top; -1 = bottom). A relative b.Path is taken against the working
// directory. The resulting stack is checked (no nesting, no duplicates,
// rw only on top) before the daemon is asked, and again by the daemon.
func ControlAddBranch(mountpoint string, b Branch, index int) error {
	stack, mp, wd, err := controlLiveStack(mountpoint)
	if err != nil {
		return fmt.Errorf("add branch %s: %w", b.Path, err)
	}
	b.Path = specAbs(b.Path, wd)
	next, index, err := controlStackWith(stack, b, index, mp)
	if err != nil {
		return fmt.Errorf("add branch %s to %s: %w", b.Path, mountpoint, err)
	}
	_, err = controlCall(mountpoint, controlRequest{Op: "add", Path: next[index].Path, Mode: ModeName(b.Mode), Index: index})
	if err != nil {
		return fmt.Errorf("add branch %s to %s: %w", b.Path, mountpoint, err)
	}
	return nil
}

// controlLiveStack returns what checking an edit of the live stack of
// the union at mountpoint needs: the stack, the canonical mountpoint and
// the working directory (relative branch paths are taken against it).
func controlLiveStack(mountpoint string) (stack []Branch, mp, wd string, err error) {
	if wd, err = os.Getwd(); err != nil {
		return nil, "", "", err
	}
	if stack, err = ControlBranches(mountpoint); err != nil {
		return nil, "", "", err
	}
	if mp, err = daemonCanonicalMountpoint(mountpoint); err != nil {
		return nil, "", "", err
	}
	return stack, mp, wd, nil
}

// ControlDelBranch removes the branch at path from the live mount at
// mountpoint. A relative path is taken against the working directory.
func ControlDelBranch(mountpoint, path string) error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("delete branch %s: %w", path, err)
	}
	abs := specAbs(path, wd)
	stack, err := ControlBranches(mountpoint)
	if err != nil {
		return err
	}
	found, err := controlFindBranch(stack, abs)
	if err != nil {
		return fmt.Errorf("delete branch %s from %s: %w", path, mountpoint, err)
	}
	if _, err := controlCall(mountpoint, controlRequest{Op: "del", Path: found}); err != nil {
		return fmt.Errorf("delete branch %s from %s: %w", path, mountpoint, err)
	}
	return nil
}

// ControlModBranch changes the mode of the read-only branch at path of
// the live mount at mountpoint between ro and rr (see Server.ModBranch).
// A relative path is taken against the working directory.
func ControlModBranch(mountpoint, path string, mode Mode) error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("mod branch %s: %w", path, err)
	}
	abs := specAbs(path, wd)
	if _, err := controlCall(mountpoint, controlRequest{Op: "mod", Path: abs, Mode: ModeName(mode)}); err != nil {
		return fmt.Errorf("mod branch %s of %s: %w", path, mountpoint, err)
	}
	return nil
}

// ControlEditBranches makes edits to the live stack of the mount at
// mountpoint, in order, all or none (see Server.EditBranches): the daemon
// checks the stack each leads to and refuses the whole if one fails.
// Relative paths are taken against the working directory.
func ControlEditBranches(mountpoint string, edits []BranchEdit) error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("edit branches of %s: %w", mountpoint, err)
	}
	reqs := make([]controlRequest, len(edits))
	for i, e := range edits {
		reqs[i] = controlRequest{Op: string(e.Op), Path: specAbs(e.Branch.Path, wd), Index: e.Index}
		if e.Op != EditDel {
			reqs[i].Mode = ModeName(e.Branch.Mode)
		}
	}
	if _, err := controlCall(mountpoint, controlRequest{Op: "edit", Edits: reqs}); err != nil {
		return fmt.Errorf("edit branches of %s: %w", mountpoint, err)
	}
	return nil
}

// isControlUnavailable says whether err means nobody answered on the socket.
func isControlUnavailable(err error) bool {
	var ce *controlError
	return err != nil && !errors.As(err, &ce)
}
