package unionfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// The mount server's protocol, one JSON message per SOCK_SEQPACKET
// packet. The client validates the spec, dials, mounts a new /dev/fuse
// connection itself (in its own mount namespace, with the mount(2)
// arguments fuseOptions gives), then:
//
//	client: {"op":"mount","spec":…,"mountpoint":…} carrying the /dev/fuse descriptor
//	server: {} once it serves the connection, or {"error":…}
//
// On an error the server has closed the descriptor, and the client
// detaches its now dead mount. The server only ever holds the FUSE
// connection.

// ServeSocketEnv names the environment variable that overrides where
// clients find the mount server (see ServeSocket).
const ServeSocketEnv = "UNIONCTL_SERVE_SOCKET"

// ServeSocket is the socket of the mount server clients dial:
// $UNIONCTL_SERVE_SOCKET, else serve.sock in StateRoot.
func ServeSocket() string {
	if p := os.Getenv(ServeSocketEnv); p != "" {
		return p
	}
	return filepath.Join(StateRoot, "serve.sock")
}

// ErrNoMountServer is returned by MountThroughServer when no mount
// server listens on the socket; the caller may mount another way.
var ErrNoMountServer = errors.New("no unionctl mount server")

// serveMessage is every message of the protocol; each side fills the
// fields of its step.
type serveMessage struct {
	Op         string     `json:"op,omitempty"`
	Spec       *MountSpec `json:"spec,omitempty"`
	Mountpoint string     `json:"mountpoint,omitempty"`
	Error      string     `json:"error,omitempty"`
	// BadSpec marks an Error that is the spec's fault (ErrBadSpec).
	BadSpec bool `json:"bad_spec,omitempty"`
}

// serveMaxMessage bounds one message (a spec of a thousand long branch
// paths fits).
const serveMaxMessage = 1 << 20

// serveStepTimeout bounds each exchange of the protocol.
const serveStepTimeout = 30 * time.Second

// err turns the Error field back into an error (nil when there is none).
func (m serveMessage) err() error {
	if m.Error == "" {
		return nil
	}
	if m.BadSpec {
		return fmt.Errorf("%w: %s", ErrBadSpec, m.Error)
	}
	return errors.New(m.Error)
}

// serveErrorMessage is the message that reports err.
func serveErrorMessage(err error) serveMessage {
	return serveMessage{Error: err.Error(), BadSpec: errors.Is(err, ErrBadSpec)}
}

// serveSend writes m, with fds attached when given.
func serveSend(conn *net.UnixConn, m serveMessage, fds ...int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > serveMaxMessage {
		return fmt.Errorf("message of %d bytes: longer than %d", len(b), serveMaxMessage)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(serveStepTimeout))
	_, _, err = conn.WriteMsgUnix(b, oob, nil)
	return err
}

// serveRecv reads one message into m and returns the descriptors that
// came with it (the caller owns them).
func serveRecv(conn *net.UnixConn, m *serveMessage) ([]int, error) {
	buf := make([]byte, serveMaxMessage)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_ = conn.SetReadDeadline(time.Now().Add(serveStepTimeout))
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	fds, ferr := serveParseRights(oob[:oobn])
	switch {
	case ferr != nil:
		serveCloseAll(fds)
		return nil, fmt.Errorf("read descriptors: %w", ferr)
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0:
		serveCloseAll(fds)
		return nil, fmt.Errorf("message truncated (flags %#x)", flags)
	case n == 0:
		serveCloseAll(fds)
		return nil, io.EOF // the peer closed the connection
	}
	if err := json.Unmarshal(buf[:n], m); err != nil {
		serveCloseAll(fds)
		return nil, fmt.Errorf("bad message: %w", err)
	}
	return fds, nil
}

// serveParseRights returns the descriptors of SCM_RIGHTS messages in oob.
func serveParseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, msg := range msgs {
		got, err := unix.ParseUnixRights(&msg)
		if err != nil {
			serveCloseAll(fds)
			return nil, err
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// serveCloseAll closes fds.
func serveCloseAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
