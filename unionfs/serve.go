package unionfs

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// MountServer is a long-running process's server of unions: clients
// (MountThroughServer) mount /dev/fuse themselves and hand the connection
// over, so a mount costs a few messages on a unix socket rather than a
// daemon process started, a Go runtime brought up and a readiness pipe.
// One MountServer serves any number of mounts; each ends when it is
// unmounted. If the server dies, the mounts it served fail with
// "transport endpoint is not connected" and unmount like any dead FUSE
// mount.
//
// Branch paths are opened in the server's mount namespace; the mount
// itself lives in the client's.
type MountServer struct {
	ln     *net.UnixListener
	path   string
	logger *log.Logger

	mu       sync.Mutex
	closed   bool
	sessions map[*servedMount]struct{}
	done     sync.WaitGroup // one per session and per connection
}

// servedMount is one mount a MountServer serves.
type servedMount struct {
	mountpoint string // as the client named it, in its namespace
	srv        *fuse.Server
}

// serveCloseWait bounds how long Close waits for the mounts it detached
// to stop being served.
const serveCloseWait = 10 * time.Second

// ListenMountServer listens on the unix socket path (its directory is
// created; a stale socket left by a dead server is replaced; a live
// server there is an error). logw receives one line per mount and per
// failure (nil: discarded).
func ListenMountServer(path string, logw io.Writer) (*MountServer, error) {
	if logw == nil {
		logw = io.Discard
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("listen %s: socket path longer than %d bytes", path, maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if conn, err := net.Dial("unixpacket", path); err == nil {
		conn.Close()
		return nil, fmt.Errorf("listen %s: a mount server already listens there", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("listen %s: remove stale socket: %w", path, err)
	}
	// Only root may hand the server branches to open.
	old := unix.Umask(0o077)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	return &MountServer{
		ln:       ln,
		path:     path,
		logger:   log.New(logw, "unionctl serve: ", log.LstdFlags),
		sessions: map[*servedMount]struct{}{},
	}, nil
}

// Socket is the path the server listens on.
func (s *MountServer) Socket() string { return s.path }

// Serve accepts clients until Close; it returns nil after Close.
func (s *MountServer) Serve() error {
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("serve %s: accept: %w", s.path, err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return nil
		}
		s.done.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.done.Done()
			defer conn.Close()
			s.handle(conn)
		}()
	}
}

// Mounts lists the mountpoints being served, as their clients named them.
func (s *MountServer) Mounts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for m := range s.sessions {
		out = append(out, m.mountpoint)
	}
	sort.Strings(out)
	return out
}

// Close stops accepting clients, detaches (MNT_DETACH) every mount it
// serves that is visible in this process's mount namespace, and waits a
// while for their serving to end. A mount in another namespace stays
// until its owner unmounts it; once this process exits it is dead.
func (s *MountServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var mps []string
	for m := range s.sessions {
		mps = append(mps, m.mountpoint)
	}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, mp := range mps {
		if uerr := unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); uerr != nil && !errors.Is(uerr, unix.EINVAL) && !errors.Is(uerr, unix.ENOENT) {
			s.logger.Printf("close: detach %s: %v", mp, uerr)
		}
	}
	finished := make(chan struct{})
	go func() { s.done.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(serveCloseWait):
		left := s.Mounts()
		return errors.Join(err, fmt.Errorf("close %s: still serving %d mounts after %v: %s", s.path, len(left), serveCloseWait, strings.Join(left, ", ")))
	}
	return err
}

// handle runs the protocol with one client (see serve_wire.go).
func (s *MountServer) handle(conn *net.UnixConn) {
	var req serveMessage
	fds, err := serveRecv(conn, &req)
	if err != nil {
		if !errors.Is(err, io.EOF) { // EOF: a liveness check
			s.logger.Printf("client: %v", err)
		}
		return
	}
	if req.Op != "mount" || req.Spec == nil || len(fds) != 1 {
		serveCloseAll(fds)
		_ = serveSend(conn, serveMessage{Error: fmt.Sprintf("bad request %q with %d descriptors: want mount, a spec and one /dev/fuse descriptor", req.Op, len(fds))})
		return
	}
	mp := req.Mountpoint
	if err := s.serve(*req.Spec, mp, fds[0]); err != nil {
		s.logger.Printf("mount %s: %v", mp, err)
		_ = serveSend(conn, serveErrorMessage(err))
		return
	}
	if err := serveSend(conn, serveMessage{}); err != nil {
		// The client is gone, its mount with it or not: serving goes
		// on until the mount is unmounted.
		s.logger.Printf("mount %s: report success: %v", mp, err)
	}
}

// serve builds the union of spec and serves it on fd, the /dev/fuse
// descriptor the client mounted at mp. It owns fd: on error it is
// closed, which leaves the client's mount dead for it to detach.
func (s *MountServer) serve(spec MountSpec, mp string, fd int) error {
	if err := serveCheckFuseFD(fd); err != nil {
		unix.Close(fd)
		return err
	}
	// The client validated the stack in full (Validate); what the server
	// needs besides is that each branch opens as a directory here, which
	// newUnion checks.
	for _, b := range spec.Branches {
		if !filepath.IsAbs(b.Path) || b.Mode < RW || b.Mode > RR {
			unix.Close(fd)
			return fmt.Errorf("%w: branch %q (mode %d): want an absolute path and mode rw, ro or rr", ErrBadSpec, b.Path, b.Mode)
		}
	}
	u, root, fsopts, err := newUnion(spec.Branches, spec.Options)
	if err != nil {
		unix.Close(fd)
		return err
	}
	// The descriptor is mounted already: go-fuse takes "/dev/fd/N" to
	// mean exactly that, and mounts nothing itself.
	fsopts.MountOptions.DirectMount = false
	fsopts.MountOptions.DirectMountStrict = false
	srv, err := serveUnion(u, root, fmt.Sprintf("/dev/fd/%d", fd), fsopts)
	if err != nil {
		// serveUnion has closed fd (see there): closing it again could
		// close a descriptor another goroutine just opened.
		return fmt.Errorf("serve the FUSE connection: %w", err)
	}
	u.server = srv
	m := &servedMount{mountpoint: mp, srv: srv}
	s.mu.Lock()
	s.sessions[m] = struct{}{}
	s.done.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.done.Done()
		srv.Wait()
		s.mu.Lock()
		delete(s.sessions, m)
		s.mu.Unlock()
		s.logger.Printf("unmounted %s", mp)
	}()
	s.logger.Printf("serving %s (%d branches)", mp, len(spec.Branches))
	return nil
}

// serveCheckFuseFD checks that fd is a /dev/fuse descriptor.
func serveCheckFuseFD(fd int) error {
	var st, dev unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat the FUSE descriptor: %w", err)
	}
	if err := unix.Stat("/dev/fuse", &dev); err != nil {
		return fmt.Errorf("stat /dev/fuse: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != dev.Rdev {
		return errors.New("the descriptor handed over is not /dev/fuse")
	}
	return nil
}

// kernelMountArgs are the mount(2) arguments for a FUSE connection with
// the go-fuse options mo, as go-fuse's own direct mount builds them,
// without the leading "fd=N,".
func kernelMountArgs(mo fuse.MountOptions) (source, fstype string, flags uintptr, data string) {
	source = mo.FsName
	if source == "" {
		source = mo.Name
	}
	fstype = "fuse." + mo.Name
	flags = unix.MS_NOSUID | unix.MS_NODEV
	if mo.DirectMountFlags != 0 {
		flags = mo.DirectMountFlags
	}
	r := []string{
		fmt.Sprintf("rootmode=%o", unix.S_IFDIR),
		fmt.Sprintf("user_id=%d", os.Geteuid()),
		fmt.Sprintf("group_id=%d", os.Getegid()),
		fmt.Sprintf("max_read=%d", mo.MaxWrite),
	}
	for _, o := range mo.Options {
		switch o {
		case "nodev":
			flags |= unix.MS_NODEV
		case "dev":
			flags &^= unix.MS_NODEV
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "suid":
			flags &^= unix.MS_NOSUID
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "exec":
			flags &^= unix.MS_NOEXEC
		default:
			r = append(r, o)
		}
	}
	if mo.AllowOther {
		r = append(r, "allow_other")
	}
	return source, fstype, flags, strings.Join(r, ",")
}

// RunMountServer listens on socket and serves mounts until SIGTERM or
// SIGINT, then closes the server (see MountServer.Close). It is
// `unionctl serve`. ready, if not nil, is called once the socket listens.
func RunMountServer(socket string, logw io.Writer, ready func()) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	s, err := ListenMountServer(socket, logw)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	if ready != nil {
		ready()
	}
	select {
	case sig := <-sigs:
		s.logger.Printf("%v: closing", sig)
		return s.Close()
	case err := <-served:
		return errors.Join(err, s.Close())
	}
}
