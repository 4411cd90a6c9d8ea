package unionfs

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startTestMountServer serves mounts from this process on a socket in a
// temp dir, closed (detaching what it still serves) when t ends. It
// returns the server and where its log goes.
func startTestMountServer(t *testing.T) (*MountServer, *syncBuffer) {
	t.Helper()
	logw := &syncBuffer{}
	s, err := ListenMountServer(filepath.Join(t.TempDir(), "serve.sock"), logw)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close mount server: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		t.Logf("server log:\n%s", logw.String())
	})
	return s, logw
}

// mountServed mounts the spec opts (branches relative to dir) at mnt
// through s.
func mountServed(t *testing.T, s *MountServer, dir, mnt, opts string) {
	t.Helper()
	spec, err := ParseOptionsAt(opts, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := MountThroughServer(s.Socket(), spec, mnt); err != nil {
		t.Fatal(err)
	}
}

// waitNoMounts waits until s serves nothing.
func waitNoMounts(t *testing.T, s *MountServer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Mounts()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("server still serves %v", s.Mounts())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMountThroughServer mounts a union through a mount server: it works
// as a union (lower files show, writes land in the rw branch), no daemon
// of its own is started, and a plain unmount ends its serving.
func TestMountThroughServer(t *testing.T) {
	dir, mnt := daemonTestDirs(t)
	s, _ := startTestMountServer(t)
	mountServed(t, s, dir, mnt, "dirs=a=rw:b=ro,udba=none")
	if got, err := os.ReadFile(filepath.Join(mnt, "f2")); err != nil || string(got) != "b/f2" {
		t.Fatalf("read f2 through the union: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "f2"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a/f2")); string(got) != "new" {
		t.Errorf("a/f2 after writing f2 = %q, want the copy-up with new data", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "b/f2")); string(got) != "b/f2" {
		t.Errorf("the ro branch changed: b/f2 = %q", got)
	}
	if got := s.Mounts(); len(got) != 1 || got[0] != mnt {
		t.Errorf("server mounts = %v, want [%s]", got, mnt)
	}
	if !IsMounted(mnt) {
		t.Errorf("IsMounted(%s) = false", mnt)
	}
	if pid := DaemonPid(mnt); pid != 0 {
		t.Errorf("a daemon (pid %d) was started for a served mount", pid)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	ra, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if got := strings.TrimSpace(string(ra)); err != nil || got != fmt.Sprint(readAheadKB) {
		t.Errorf("read_ahead_kb of the mount = %q (%v), want %d", got, err, readAheadKB)
	}
	if err := Umount(mnt); err != nil {
		t.Fatal(err)
	}
	if IsMounted(mnt) {
		t.Fatal("still mounted after Umount")
	}
	waitNoMounts(t, s)
}

// TestMountThroughServerFlags checks that the per-mount flags of the spec
// (ro here) are set on a served mount.
func TestMountThroughServerFlags(t *testing.T) {
	dir, mnt := daemonTestDirs(t)
	s, _ := startTestMountServer(t)
	mountServed(t, s, dir, mnt, "dirs=a=rw:b=ro,ro,noexec")
	t.Cleanup(func() { _ = Umount(mnt) })
	err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("create on a ro served mount: %v, want EROFS", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if st.Flags&0x8 == 0 { // ST_NOEXEC
		t.Errorf("statfs flags %#x: noexec not set", st.Flags)
	}
}

// TestMountThroughServerErrors: no server, a bad spec and a branch the
// server cannot open each fail with a clear error and mount nothing.
func TestMountThroughServerErrors(t *testing.T) {
	dir, mnt := daemonTestDirs(t)
	spec, err := ParseOptionsAt("dirs=a=rw:b=ro", dir)
	if err != nil {
		t.Fatal(err)
	}
	err = MountThroughServer(filepath.Join(dir, "no.sock"), spec, mnt)
	if !errors.Is(err, ErrNoMountServer) {
		t.Errorf("mount with no server: %v, want ErrNoMountServer", err)
	}
	s, _ := startTestMountServer(t)
	bad := spec
	bad.Branches = []Branch{{Path: filepath.Join(dir, "missing"), Mode: RW}, spec.Branches[1]}
	err = MountThroughServer(s.Socket(), bad, mnt)
	if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("mount of a missing branch: %v, want ErrBadSpec naming it", err)
	}
	// The server refuses what the client let through: a branch gone
	// between the client's check and the server's open.
	gone := spec
	gone.Branches = []Branch{{Path: filepath.Join(dir, "gone"), Mode: RW}}
	reply := rawMountRequest(t, s, serveMessage{Op: "mount", Spec: &gone, Mountpoint: mnt}, openFuse(t))
	if reply.Error == "" || !strings.Contains(reply.Error, "gone") {
		t.Errorf("server reply to a missing branch: %+v, want an error naming it", reply)
	}
	if IsMounted(mnt) {
		t.Error("something got mounted")
	}
}

// TestMountServerBadClients: garbage, an unknown request, a request
// without a descriptor and one with a wrong descriptor get errors; the
// server serves the next client as if nothing happened.
func TestMountServerBadClients(t *testing.T) {
	dir, mnt := daemonTestDirs(t)
	s, _ := startTestMountServer(t)
	spec, err := ParseOptionsAt("dirs=a=rw:b=ro", dir)
	if err != nil {
		t.Fatal(err)
	}
	conn := dialTestServer(t, s)
	if _, err := conn.Write([]byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if reply := rawMountRequest(t, s, serveMessage{Op: "format-disk"}); !strings.Contains(reply.Error, "bad request") {
		t.Errorf("unknown request: reply %+v", reply)
	}
	if reply := rawMountRequest(t, s, serveMessage{Op: "mount", Spec: &spec, Mountpoint: mnt}); !strings.Contains(reply.Error, "one /dev/fuse descriptor") {
		t.Errorf("mount without a descriptor: reply %+v", reply)
	}
	f, err := os.Open(filepath.Join(dir, "a/f1"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if reply := rawMountRequest(t, s, serveMessage{Op: "mount", Spec: &spec, Mountpoint: mnt}, int(f.Fd())); !strings.Contains(reply.Error, "not /dev/fuse") {
		t.Errorf("wrong descriptor: reply %+v", reply)
	}
	if IsMounted(mnt) {
		t.Fatal("a bad client got something mounted")
	}
	mountServed(t, s, dir, mnt, "dirs=a=rw:b=ro")
	if _, err := os.Stat(filepath.Join(mnt, "f2")); err != nil {
		t.Error(err)
	}
	if err := Umount(mnt); err != nil {
		t.Fatal(err)
	}
	waitNoMounts(t, s)
}

// rawMountRequest sends m with fds to s as a raw client and returns the
// server's reply.
func rawMountRequest(t *testing.T, s *MountServer, m serveMessage, fds ...int) serveMessage {
	t.Helper()
	conn := dialTestServer(t, s)
	if err := serveSend(conn, m, fds...); err != nil {
		t.Fatal(err)
	}
	var reply serveMessage
	got, err := serveRecv(conn, &reply)
	serveCloseAll(got)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// openFuse opens /dev/fuse (unmounted: a connection nobody mounted).
func openFuse(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return fd
}

// TestMountServerClose: closing the server detaches the mounts it serves
// and ends their serving; a second server cannot take a live socket.
func TestMountServerClose(t *testing.T) {
	dir, mnt := daemonTestDirs(t)
	s, logw := startTestMountServer(t)
	if _, err := ListenMountServer(s.Socket(), nil); err == nil || !strings.Contains(err.Error(), "already listens") {
		t.Errorf("second server on a live socket: %v", err)
	}
	spec, err := ParseOptionsAt("dirs=a=rw:b=ro", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := MountThroughServer(s.Socket(), spec, mnt); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // again at cleanup: a no-op
		t.Fatal(err)
	}
	if IsMounted(mnt) {
		t.Error("mount still there after the server closed")
	}
	if _, err := os.Stat(s.Socket()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if !strings.Contains(logw.String(), "unmounted "+mnt) {
		t.Errorf("server log does not tell the mount ended:\n%s", logw.String())
	}
}

// dialTestServer connects to s as a raw client.
func dialTestServer(t *testing.T, s *MountServer) *net.UnixConn {
	t.Helper()
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: s.Socket(), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
