package unionfs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
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
	case "add":
		err = c.add(req)
	case "del":
		err = c.del(req)
	case "mod":
		err = c.mod(req)
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
	}
	return resp
}

// add inserts a branch after checking the resulting stack.
func (c *controlServer) add(req controlRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	mode, err := ParseMode(req.Mode)
	if err != nil {
		return fmt.Errorf("add branch %s: %w", req.Path, err)
	}
	stack, index, err := controlStackWith(c.srv.Branches(), Branch{Path: req.Path, Mode: mode}, req.Index, c.mountpoint)
	if err != nil {
		return fmt.Errorf("add branch %s: %w", req.Path, err)
	}
	if err := c.srv.AddBranch(stack[index], index); err != nil {
		return fmt.Errorf("add branch %s: %w", req.Path, err)
	}
	return nil
}

// del removes a branch by path.
func (c *controlServer) del(req controlRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	path, err := controlFindBranch(c.srv.Branches(), req.Path)
	if err != nil {
		return fmt.Errorf("delete branch %s: %w", req.Path, err)
	}
	if err := c.srv.DelBranch(path); err != nil {
		return fmt.Errorf("delete branch %s: %w", req.Path, err)
	}
	return nil
}

// mod changes a branch's mode.
func (c *controlServer) mod(req controlRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	mode, err := ParseMode(req.Mode)
	if err != nil {
		return fmt.Errorf("mod branch %s: %w", req.Path, err)
	}
	path, err := controlFindBranch(c.srv.Branches(), req.Path)
	if err != nil {
		return fmt.Errorf("mod branch %s: %w", req.Path, err)
	}
	return c.srv.ModBranch(path, mode)
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
