package unionfs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

var (
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.FileReaddirenter   = (*dirHandle)(nil)
	_ fs.FileSeekdirer      = (*dirHandle)(nil)
	_ fs.FileReleasedirer   = (*dirHandle)(nil)
	_ fs.FileFsyncdirer     = (*dirHandle)(nil)
)

// dirHandle is an open directory: a snapshot of the merged listing taken
// at opendir (and again at rewinddir), whose offsets are indexes, so
// telldir/seekdir are stable whatever happens to the directory. It keeps
// a descriptor of the top-most copy so fstat works after the directory
// was removed or replaced.
type dirHandle struct {
	n  *node
	fd int

	mu sync.Mutex
	ds fs.DirStream
}

// OpendirHandle snapshots the listing of n.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ds, errno := n.Readdir(ctx)
	if errno != 0 {
		return nil, 0, errno
	}
	d := &dirHandle{n: n, fd: -1, ds: ds}
	if _, p, errno := n.where(); errno == 0 {
		if fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0); err == nil {
			d.fd = fd
			n.mu.Lock()
			n.dirFds = append(n.dirFds, fd)
			n.mu.Unlock()
		}
	}
	return d, 0, 0
}

// Readdirent returns the next entry of the snapshot.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ds.HasNext() {
		return nil, 0
	}
	e, errno := d.ds.Next()
	return &e, errno
}

// Seekdir moves to an index of the snapshot; offset 0 (rewinddir) takes
// a new snapshot, as POSIX wants rewinddir to show the current contents.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == 0 {
		ds, errno := d.n.Readdir(ctx)
		if errno == 0 {
			d.ds.Close()
			d.ds = ds
			return 0
		}
	}
	if sd, ok := d.ds.(fs.FileSeekdirer); ok {
		return sd.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

// Fsyncdir syncs the top-most copy.
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if d.fd < 0 {
		return 0
	}
	return errnoOf(syscall.Fsync(d.fd))
}

// Releasedir drops the snapshot and the descriptor.
func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ds.Close()
	if d.fd < 0 {
		return
	}
	n := d.n
	n.mu.Lock()
	for i, fd := range n.dirFds {
		if fd == d.fd {
			n.dirFds = append(n.dirFds[:i], n.dirFds[i+1:]...)
			break
		}
	}
	n.mu.Unlock()
	syscall.Close(d.fd)
	d.fd = -1
}

// statOpenDir stats an open descriptor of directory n, for an fstat
// after n lost its name.
func (n *node) statOpenDir(st *syscall.Stat_t) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, fd := range n.dirFds {
		if syscall.Fstat(fd, st) == nil {
			return true
		}
	}
	return false
}

var _ fs.FileLookuper = (*dirHandle)(nil)

// Lookup answers READDIRPLUS for one listed name. A name whose node the
// kernel still holds gets no attributes (node id 0: the kernel leaves
// its entry alone and revalidates it on its own timeouts, as after a
// plain READDIR), so a warm walk costs no lookups; a new name is looked
// up, so a cold walk needs no LOOKUP per name.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if d.n.GetChild(name) != nil {
		return nil, syscall.EEXIST
	}
	return d.n.Lookup(ctx, name, out)
}
