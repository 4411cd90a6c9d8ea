package unionfs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fileHandle is implemented by both handle kinds.
type fileHandle interface{ base() *handle }

// handle is an open file served by the daemon. A handle opened on a
// lower branch is read-only and follows the node across a copy-up: it
// reopens the upper copy when the node's copy generation changes, so
// it sees data written after the copy-up (one file, as POSIX says).
type handle struct {
	n     *node
	mu    sync.Mutex // guards fd, gen and br
	fd    int
	gen   uint64  // n.copyGen when fd was opened
	br    *branch // branch fd lives in, when it is not the rw branch
	flags uint32
	mode  handleMode
	// old holds descriptors replaced after a copy-up; a read result may
	// still splice from them, so they are closed on Release.
	old []int
}

type handleMode int

const (
	modeCached handleMode = iota
	modePassthrough
	modeDirect
)

// ptHandle is a handle the kernel reads and writes directly (FUSE
// passthrough). Only files in the rw branch get one. It is a distinct
// type because go-fuse gives every handle whose type has PassthroughFd
// the node's backing file.
type ptHandle struct{ *handle }

func (h *handle) base() *handle { return h }

// PassthroughFd hands the backing descriptor to the kernel.
func (h *ptHandle) PassthroughFd() (int, bool) { return h.fd, true }

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileReleaser  = (*handle)(nil)
	_ fs.FileFlusher   = (*handle)(nil)
	_ fs.FileFsyncer   = (*handle)(nil)
	_ fs.FileLseeker   = (*handle)(nil)
	_ fs.FileAllocater = (*handle)(nil)

	_ fs.FilePassthroughFder = (*ptHandle)(nil)
)

func (h *handle) writable() bool {
	return h.br == nil && h.flags&syscall.O_ACCMODE != syscall.O_RDONLY
}

// current returns the descriptor to use, reopening the node's upper copy
// when a lower handle's file was copied up.
func (h *handle) current() (int, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.br == nil || h.mode == modePassthrough {
		// A lower passthrough handle (passthrough=all) keeps its file,
		// as the kernel's reads through it do.
		return h.fd, 0
	}
	h.n.mu.Lock()
	gen := h.n.copyGen
	h.n.mu.Unlock()
	if gen == h.gen {
		return h.fd, 0
	}
	e, p, release, errno := h.n.where()
	if errno != 0 {
		return h.fd, 0 // keep reading what we have (e.g. removed)
	}
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	release()
	if err != nil {
		return h.fd, 0
	}
	h.old = append(h.old, h.fd)
	h.n.u.branchOpen(h.br, -1)
	h.fd, h.gen, h.br = fd, gen, nil
	if e.top != h.n.u.rw && e.link == nil {
		h.br = e.top
		h.n.u.branchOpen(h.br, 1)
	}
	return fd, 0
}

// Read reads from the descriptor.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	fd, errno := h.current()
	if errno != 0 {
		return nil, errno
	}
	if len(dest) <= smallRead {
		n, err := syscall.Pread(fd, dest, off)
		if err != nil {
			return nil, errnoOf(err)
		}
		return bufferResult(dest[:max(n, 0)]), 0
	}
	return fuse.ReadResultFd(uintptr(fd), off, len(dest)), 0
}

// bufferResult is read data already in memory. It offers go-fuse its
// bytes as slices, which go-fuse writes to the kernel in one writev:
// for fuse.ReadResultData, go-fuse 2.12 first writes the reply header
// into a splice pipe, finds it cannot splice, and drains the pipe again,
// three wasted system calls and a netpoller wake-up on every small read.
type bufferResult []byte

// Bytes returns the data.
func (b bufferResult) Bytes([]byte) ([]byte, fuse.Status) { return b, fuse.OK }

// Size is the data's length.
func (b bufferResult) Size() int { return len(b) }

// Done runs once the reply is written: it has nothing to release, and
// lets the scheduler have a turn (see schedYield).
func (b bufferResult) Done() { schedYield() }

// Slices returns the data as the one slice go-fuse writes after the
// reply header.
func (b bufferResult) Slices() ([][]byte, fuse.Status) { return [][]byte{b}, fuse.OK }

// smallRead is the largest read answered by a plain pread into the
// request buffer: below it splicing (a pipe and two more system calls)
// costs more than the copy it saves.
const smallRead = 32 << 10

// Write writes to the descriptor, which is always in the rw branch.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.br != nil {
		return 0, syscall.EBADF
	}
	n, err := syscall.Pwrite(h.fd, data, off)
	if n < 0 {
		n = 0
	}
	return uint32(n), errnoOf(err)
}

// Release closes the descriptor.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.n
	n.mu.Lock()
	switch h.mode {
	case modeCached:
		n.cachedOpen--
	case modePassthrough:
		n.ptOpen--
		if n.ptOpen == 0 {
			// The kernel lets go of the inode's backing file with
			// its last passthrough file.
			n.lowerBacking = nil
		}
	}
	n.mu.Unlock()
	if h.br != nil {
		n.u.branchOpen(h.br, -1)
	}
	for _, fd := range h.old {
		syscall.Close(fd)
	}
	h.old = nil
	err := syscall.Close(h.fd)
	h.fd = -1
	return errnoOf(err)
}

// Flush reports errors of a close without closing.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	fd, _ := h.current()
	h.mu.Lock()
	defer h.mu.Unlock()
	nfd, err := syscall.Dup(fd)
	if err != nil {
		return errnoOf(err)
	}
	return errnoOf(syscall.Close(nfd))
}

// Fsync syncs the descriptor.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	fd, _ := h.current()
	h.mu.Lock()
	defer h.mu.Unlock()
	return errnoOf(syscall.Fsync(fd))
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the backing file.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	fd, _ := h.current()
	h.mu.Lock()
	defer h.mu.Unlock()
	r, err := unix.Seek(fd, int64(off), int(whence))
	return uint64(r), errnoOf(err)
}

// Allocate fallocates in the backing file.
func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if !h.writable() {
		return syscall.EBADF
	}
	return errnoOf(unix.Fallocate(h.fd, mode, int64(off), int64(size)))
}

func (h *handle) getattr(out *fuse.AttrOut) syscall.Errno {
	fd, _ := h.current()
	h.mu.Lock()
	defer h.mu.Unlock()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return errnoOf(err)
	}
	h.n.u.links.fixNlink(&st)
	out.FromStat(&st)
	out.SetTimeout(h.n.u.attrTimeout(nil, st.Mode))
	return 0
}

// setattr applies a SETATTR through the handle's descriptor.
func (h *handle) setattr(in *fuse.SetAttrIn) syscall.Errno {
	return attrSetter{
		chmod:    func(mode uint32) error { return syscall.Fchmod(h.fd, mode) },
		chown:    func(uid, gid int) error { return syscall.Fchown(h.fd, uid, gid) },
		truncate: func(size int64) error { return syscall.Ftruncate(h.fd, size) },
		utimes: func(ts []unix.Timespec) error {
			return unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+itoa(h.fd), ts, 0)
		},
	}.apply(in)
}
