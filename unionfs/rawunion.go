package unionfs

import (
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// rawUnion is the go-fuse node bridge serving a union, with what the
// bridge cannot do itself: directories opened by the kernel without a
// request (zeroOpendir, kernellisting.go), and a guard around a go-fuse
// bug in releases (Release).
type rawUnion struct {
	fuse.RawFileSystem
	u *ufs

	// releasing counts the file releases in flight (see Release).
	releasing atomic.Int64

	// The listings of directories the kernel opened itself (see
	// kernellisting.go).
	mu       sync.Mutex
	listings map[uint64]*listing // by node id
	opened   int                 // handles opened for listings, for tests
}

// newRawUnion wraps the node bridge of root.
func newRawUnion(u *ufs, root fs.InodeEmbedder, opts *fs.Options) *rawUnion {
	return &rawUnion{RawFileSystem: fs.NewNodeFS(root, opts), u: u, listings: map[uint64]*listing{}}
}

// Release counts the file releases being handled while go-fuse handles
// one. go-fuse 2.12 drops a reference to the node's passthrough backing
// file on every release, also of a handle that never took one; a
// release running while another handle of the node is opened with
// passthrough can so unregister the backing file the open's reply
// names, and the kernel then fails that open with EIO. newHandleMode
// gives no passthrough while a release is in flight.
func (r *rawUnion) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	r.releasing.Add(1)
	r.RawFileSystem.Release(cancel, in)
	r.releasing.Add(-1)
	schedYield() // nothing waits for a release's reply
}

// ReleaseDir releases a directory handle, and lets the scheduler have a
// turn (see schedYield): nothing waits for its reply.
func (r *rawUnion) ReleaseDir(in *fuse.ReleaseIn) {
	r.RawFileSystem.ReleaseDir(in)
	schedYield()
}

// serveUnion serves the union rooted at root on the FUSE mount
// described by fsopts at dir (a mountpoint, or /dev/fd/N for a
// descriptor of /dev/fuse), and returns once the kernel's INIT is
// answered. The branch watcher (udba=notify) runs while the mount is
// served. A /dev/fd/N descriptor is go-fuse's from here on, also when
// serveUnion fails: go-fuse 2.12 takes such a path as mounted (no
// DirectMount), so it gets past mounting and closes N itself when it
// cannot serve it (TestServeUnionFailureClosesDescriptor); the caller
// must not close it again.
func serveUnion(u *ufs, root fs.InodeEmbedder, dir string, fsopts *fs.Options) (*fuse.Server, error) {
	closeWatcher := func() {
		if u.watcher != nil {
			u.watcher.close()
		}
		u.closeBranchRoots()
	}
	// The kernel takes the caller's umask off the mode of each file,
	// directory and node the union makes before asking for it; this
	// process's own umask must not be taken off again.
	unix.Umask(0)
	raw := newRawUnion(u, root, fsopts)
	if fd, ok := devFdNumber(dir); ok {
		u.keepConnFd(fd)
	}
	srv, err := fuse.NewServer(raw, dir, &fsopts.MountOptions)
	if err != nil {
		u.closeConnFd()
		closeWatcher()
		return nil, err
	}
	u.raw = raw
	release := reserveReaderProcs()
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		release()
		u.closeConnFd()
		closeWatcher()
		return nil, err
	}
	if u.watcher != nil {
		go u.watcher.run()
	}
	go func() {
		srv.Wait()
		u.closeConnFd()
		closeWatcher()
		release()
	}()
	return srv, nil
}

// SetXAttr sets an attribute, then does what the kernel asks with
// FUSE_SETXATTR_ACL_KILL_SGID: an access ACL set by a caller outside the
// file's group and without CAP_FSETID clears the set-group-ID bit, as it
// does on a local file system. The daemon sets the ACL as root, which
// keeps the bit, so it clears it after.
func (r *rawUnion) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	st := r.RawFileSystem.SetXAttr(cancel, in, attr, data)
	if !st.Ok() || in.SetXAttrFlags&fuse.SETXATTR_ACL_KILL_SGID == 0 {
		return st
	}
	var out fuse.AttrOut
	if st := r.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: in.InHeader}, &out); !st.Ok() || out.Mode&syscall.S_ISGID == 0 {
		return st
	}
	set := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: in.InHeader, Valid: fuse.FATTR_MODE, Mode: out.Mode &^ syscall.S_ISGID}}
	return r.RawFileSystem.SetAttr(cancel, &set, &out)
}
