package unionfs

import (
	"context"
	"sync"
	"syscall"
	"time"

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
// at opendir (and again at rewinddir), whose offsets are the names'
// offsets (see dirCacheState), so telldir/seekdir are stable whatever
// happens to the directory. It keeps a descriptor of the top-most copy
// so fstat works after the directory was removed or replaced.
type dirHandle struct {
	n    *node
	fd   int
	fdBr *branch // the branch fd is a directory of

	mu sync.Mutex
	ds *dirSnapshot
	// aheadTried says a statAhead was considered for ds's listing.
	aheadTried bool
}

// OpendirHandle snapshots the listing of n. The handle lets the kernel
// cache the listing (see dirCacheState), so a walk that lists a
// directory again is answered without a READDIR round trip per buffer.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ents, lt, errno := n.mergedEntriesListed()
	if errno != 0 {
		return nil, 0, errno
	}
	ds, keep := n.dirCacheOpen(ents)
	ds.listed = lt
	long := n.u.longCache()
	if long && !keep && !n.u.zeroOpendir() {
		// Drop what the kernel holds; this handle's snapshot refills it.
		// (Without OPENDIR requests the kernel is filling its copy from
		// this very handle, and drops it itself when the directory
		// changes through the mount.)
		// (go-fuse always pairs FOPEN_CACHE_DIR with FOPEN_KEEP_CACHE,
		// so the kernel keeps its copy unless told.)
		_ = n.NotifyContent(0, 0)
	}
	d := &dirHandle{n: n, fd: -1, ds: ds}
	if e, p, release, errno := n.where(); errno == 0 {
		fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
		release()
		if err == nil {
			d.fd, d.fdBr = fd, e.top
			n.mu.Lock()
			dir := n.dirLocked()
			dir.fds = append(dir.fds, fd)
			n.mu.Unlock()
		}
	}
	if !long {
		// Short timeouts (udba=reval): once they pass, a walk's entries
		// are refreshed by READDIRPLUS, which a cached listing would not
		// send; each would cost a LOOKUP instead. So the kernel keeps a
		// listing only for a walk soon after the last refill.
		window := n.u.listingWindow()
		if window <= 0 {
			return d, 0, 0
		}
		if n.dirCacheRefill(keep, window) {
			_ = n.NotifyContent(0, 0)
		}
	}
	return d, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// Readdirent returns the next entry of the snapshot.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ds.HasNext() {
		if d.ds.listed != nil {
			// The listing is through: its stats taken ahead go (the
			// handle may stay open long).
			d.ds.listed.ahead.Store(nil)
		}
		return nil, 0
	}
	e, errno := d.ds.Next()
	return &e, errno
}

// Seekdir moves past the entry whose offset is off; offset 0 (rewinddir)
// takes a new snapshot, as POSIX wants rewinddir to show the current
// contents.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == 0 {
		ents, lt, errno := d.n.mergedEntriesListed()
		if errno == 0 {
			d.ds = d.n.dirCacheRewind(ents, d.n.u.listingWindow())
			d.ds.listed = lt
			d.aheadTried = false
			return 0
		}
	}
	d.ds.seek(off)
	return 0
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
	n := d.n
	n.dirCacheClose()
	if d.fd < 0 {
		return
	}
	n.mu.Lock()
	dir := n.dirLocked()
	for i, fd := range dir.fds {
		if fd == d.fd {
			dir.fds = append(dir.fds[:i], dir.fds[i+1:]...)
			break
		}
	}
	n.mu.Unlock()
	syscall.Close(d.fd)
	d.fd = -1
}

// statOpenDir stats an open descriptor of directory n, for an fstat
// after n lost its name; without one it gives the attributes n had when
// it was removed through the union.
func (n *node) statOpenDir(st *syscall.Stat_t) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dir == nil {
		return false
	}
	for _, fd := range n.dir.fds {
		if syscall.Fstat(fd, st) == nil {
			return true
		}
	}
	if n.dir.removed != nil {
		*st = *n.dir.removed
		return true
	}
	return false
}

// dirRemoved records the attributes of child directory name, which st
// described, as they are after its removal.
func (n *node) dirRemoved(name string, st syscall.Stat_t) {
	in := n.GetChild(name)
	if in == nil {
		return
	}
	ch, ok := in.Operations().(*node)
	if !ok {
		return
	}
	st.Nlink = 0
	ch.mu.Lock()
	ch.dirLocked().removed = &st
	ch.mu.Unlock()
}

// listingWindow is how long the names and attributes a READDIRPLUS
// renews stay cached under short timeouts (see dirCacheRefill); 0 with
// long timeouts, which keep listings as long as they hold, or with none.
func (u *ufs) listingWindow() time.Duration {
	if u.longCache() {
		return 0
	}
	return max(0, min(u.opts.EntryTimeout, u.opts.AttrTimeout))
}

var _ fs.FileLookuper = (*dirHandle)(nil)

// Lookup answers READDIRPLUS for one listed name. A new name is looked
// up (a listed file with one lstat, see listedTops), so a cold walk
// needs no LOOKUP per name. With long timeouts a name
// whose node the kernel still holds gets no attributes (node id 0: the
// kernel leaves its entry alone, as after a plain READDIR), which saves
// the daemon the lookup; with short ones (udba=reval) it is looked up
// again, which renews the kernel's entry: a walk after the timeouts
// passed then costs no LOOKUP per name.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if d.n.u.longCache() && d.n.GetChild(name) != nil {
		return nil, syscall.EEXIST
	}
	d.mu.Lock()
	lt, fd, fdBr := d.ds.listed, d.fd, d.fdBr
	if lt != nil && !d.aheadTried {
		// The kernel asks for a name it does not hold: a walk. State
		// the rest of the listing ahead of it (see statAhead).
		d.aheadTried = true
		lt.ahead.Store(startStatAhead(lt, d.ds.names(), name, fd, fdBr))
	}
	d.mu.Unlock()
	if lt != nil {
		if in, ok := d.n.lookupListed(ctx, lt, name, out, fd, fdBr); ok {
			return in, 0
		}
	}
	return d.n.Lookup(ctx, name, out)
}
