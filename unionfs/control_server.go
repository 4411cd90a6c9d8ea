package unionfs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// controlServer answers control requests for one mounted Server.
type controlServer struct {
	srv        *Server
	mountpoint string
	listener   net.Listener
	unmount    func() error // ends the mount, as SIGTERM does

	mu       sync.Mutex     // serialises branch changes
	inflight sync.WaitGroup // requests being answered
}

// startControlServer listens on socketPath and serves requests until close.
func startControlServer(socketPath string, srv *Server, mountpoint string, unmount func() error) (*controlServer, error) {
	_ = os.Remove(socketPath)
	l, err := net.Listen("unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", socketPath, err)
	}
	if err := os.Chmod(socketPath, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", socketPath, err)
	}
	c := &controlServer{srv: srv, mountpoint: mountpoint, listener: l, unmount: unmount}
	go c.accept()
	return c, nil
}

// close stops listening and lets the requests being answered finish (the
// unmount request answers after the mount is gone).
func (c *controlServer) close() {
	c.listener.Close()
	done := make(chan struct{})
	go func() { c.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(controlTimeout):
	}
}

// accept serves each connection in its own goroutine.
func (c *controlServer) accept() {
	for {
		conn, err := c.listener.Accept()
		if err != nil {
			return
		}
		go c.serveConn(conn)
	}
}

// serveConn answers the requests of one connection.
func (c *controlServer) serveConn(conn net.Conn) {
	defer conn.Close()
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	enc := json.NewEncoder(conn)
	for sc.Scan() {
		c.inflight.Add(1)
		var req controlRequest
		var resp controlResponse
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp = controlResponse{Error: "bad control request: " + err.Error(), BadSpec: true}
		} else {
			resp = c.handle(req)
		}
		err := enc.Encode(resp)
		c.inflight.Done()
		if err != nil {
			return
		}
	}
}

// handle runs one request.
func (c *controlServer) handle(req controlRequest) controlResponse {
	var err error
	switch req.Op {
	case "ls":
	case "add", "del", "mod":
		err = c.edit([]controlRequest{req})
	case "edit":
		err = c.edit(req.Edits)
	case "unmount":
		err = c.unmount()
	default:
		err = fmt.Errorf("%w: unknown control op %q", ErrBadSpec, req.Op)
	}
	if err != nil {
		return controlResponse{Error: err.Error(), BadSpec: errors.Is(err, ErrBadSpec)}
	}
	resp := controlResponse{OK: true}
	if req.Op != "unmount" {
		resp.Branches = controlBranches(c.srv.Branches())
		resp.Fallback = c.srv.Fallback()
	}
	return resp
}

// edit makes the branch edits reqs (add, del, mod) to the live stack,
// all or none: planBranchEdits checks the stacks they lead to, then
// Server.EditBranches makes them under one lock.
func (c *controlServer) edit(reqs []controlRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	edits, err := planBranchEdits(c.srv.Branches(), reqs, c.mountpoint)
	if err != nil {
		return err
	}
	return c.srv.EditBranches(edits)
}

// planBranchEdits plays the edit requests reqs (absolute paths) on stack
// as the daemon will make them, and returns them as edits of branches by
// their paths in the stack: an added branch's stack is checked as a
// whole and against the mountpoint (controlStackWith), a deleted or
// changed branch is found (controlFindBranch) and must not be the rw
// branch. The first request that fails is reported.
func planBranchEdits(stack []Branch, reqs []controlRequest, mountpoint string) ([]BranchEdit, error) {
	edits := make([]BranchEdit, 0, len(reqs))
	for _, r := range reqs {
		op := EditOp(r.Op)
		var mode Mode
		if op == EditAdd || op == EditMod {
			var err error
			if mode, err = ParseMode(r.Mode); err != nil {
				return nil, fmt.Errorf("%s branch %s: %w", op, r.Path, err)
			}
		}
		switch op {
		case EditAdd:
			next, index, err := controlStackWith(stack, Branch{Path: r.Path, Mode: mode}, r.Index, mountpoint)
			if err != nil {
				return nil, fmt.Errorf("add branch %s: %w", r.Path, err)
			}
			edits = append(edits, BranchEdit{Op: EditAdd, Branch: next[index], Index: index})
			stack = next
			continue
		case EditDel, EditMod:
		default:
			return nil, fmt.Errorf("%w: branch edit %q of %s: want add, del or mod", ErrBadSpec, r.Op, r.Path)
		}
		path, err := controlFindBranch(stack, r.Path)
		if err != nil {
			return nil, fmt.Errorf("%s branch %s: %w", op, r.Path, err)
		}
		i := slices.IndexFunc(stack, func(b Branch) bool { return b.Path == path })
		switch {
		case stack[i].Mode == RW:
			return nil, specBadf("%s branch %s: it is the rw branch, which stays rw while mounted", op, r.Path)
		case op == EditDel:
			stack = slices.Delete(slices.Clone(stack), i, i+1)
		case mode != RO && mode != RR:
			return nil, specBadf("mod branch %s: only ro or rr can be set on a live mount", r.Path)
		default:
			stack = slices.Clone(stack)
			stack[i].Mode = mode
		}
		edits = append(edits, BranchEdit{Op: op, Branch: Branch{Path: path, Mode: mode}})
	}
	return edits, nil
}

// controlStackWith returns stack with b inserted at index (-1: at the
// bottom), checked as a whole and against the mountpoint, and the index
// used.
func controlStackWith(stack []Branch, b Branch, index int, mountpoint string) ([]Branch, int, error) {
	if index < 0 {
		index = len(stack)
	}
	if index > len(stack) {
		return nil, 0, fmt.Errorf("%w: index %d out of range (the stack has %d branches; 0 is the top)", ErrBadSpec, index, len(stack))
	}
	if index == 0 && len(stack) > 0 && stack[0].Mode == RW {
		return nil, 0, fmt.Errorf("%w: index 0 is the place of the rw branch %s; add below it (index 1 or more)", ErrBadSpec, stack[0].Path)
	}
	if b.Mode == RW {
		return nil, 0, fmt.Errorf("%w: branch %s: only ro or rr branches can be added to a live mount", ErrBadSpec, b.Path)
	}
	next := make([]Branch, 0, len(stack)+1)
	next = append(next, stack[:index]...)
	next = append(next, b)
	next = append(next, stack[index:]...)
	if err := Validate(next, mountpoint); err != nil {
		return nil, 0, err
	}
	resolved, err := CanonicalBranches(next)
	if err != nil {
		return nil, 0, err
	}
	return resolved, index, nil
}

// controlFindBranch returns the path of the branch of stack that path
// names (after resolving symlinks where it still exists).
func controlFindBranch(stack []Branch, path string) (string, error) {
	want := filepath.Clean(path)
	if real, err := filepath.EvalSymlinks(want); err == nil {
		want = real
	}
	for _, b := range stack {
		if b.Path == want || b.Path == filepath.Clean(path) {
			return b.Path, nil
		}
	}
	return "", fmt.Errorf("%w: %s is not a branch of this mount", ErrBadSpec, path)
}
