package unionfs

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Zero-message opendir.
//
// With udba=none (names and attributes cached for a day) the kernel keeps
// directory listings too (see OpendirHandle), and the only request left
// in a repeated walk is the OPENDIR (and RELEASEDIR) of every directory.
// Such a union answers the first OPENDIR with ENOSYS: the kernel then
// opens directories by itself from then on (fc->no_opendir), with
// FOPEN_KEEP_CACHE|FOPEN_CACHE_DIR, and sends READDIRPLUS with handle 0.
// The kernel drops its copy of a listing when the directory changes
// through the mount (its iversion or mtime moves) and when the daemon
// invalidates the inode (branch changes, Revalidate); a change made to a
// lower branch from outside is not looked for, which is what udba=none
// means.
//
// go-fuse's bridge keeps listing state per handle, so rawUnion opens a
// handle of its own for a READDIRPLUS with handle 0 (the bridge calls
// OpendirHandle as for any open), keeps it while the kernel reads on,
// and releases it at the end of the listing.

// zeroOpendirMin is the entry and attribute timeout from which a union
// opens directories without a request: udba=none.
const zeroOpendirMin = udbaNoneTimeout

// zeroOpendir says whether the union's directories are opened by the
// kernel alone (see rawUnion).
func (u *ufs) zeroOpendir() bool {
	return u.opts.EntryTimeout >= zeroOpendirMin && u.opts.AttrTimeout >= zeroOpendirMin
}

// maxListings bounds the handles rawUnion holds for listings the kernel
// stopped reading before their end.
var maxListings = 1024

// listing is the handle rawUnion holds for the kernel's reading of one
// directory.
type listing struct {
	mu   sync.Mutex // held while the handle is in use
	fh   uint64
	open bool
}

// OpenDir answers ENOSYS when the kernel is to open directories itself.
func (r *rawUnion) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if r.u.zeroOpendir() {
		return fuse.ENOSYS
	}
	return r.RawFileSystem.OpenDir(cancel, in, out)
}

// ReadDirPlus serves a kernel-opened directory (handle 0) from a handle
// of rawUnion's.
func (r *rawUnion) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh != 0 {
		return r.RawFileSystem.ReadDirPlus(cancel, in, out)
	}
	return r.readListing(cancel, in, out, r.RawFileSystem.ReadDirPlus)
}

// ReadDir is ReadDirPlus without attributes.
func (r *rawUnion) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh != 0 {
		return r.RawFileSystem.ReadDir(cancel, in, out)
	}
	return r.readListing(cancel, in, out, r.RawFileSystem.ReadDir)
}

// FsyncDir syncs a kernel-opened directory through a handle opened for
// the call.
func (r *rawUnion) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if in.Fh != 0 {
		return r.RawFileSystem.FsyncDir(cancel, in)
	}
	fh, st := r.openHandle(cancel, &in.InHeader)
	if !st.Ok() {
		return st
	}
	call := *in
	call.Fh = fh
	st = r.RawFileSystem.FsyncDir(cancel, &call)
	r.releaseHandle(&in.InHeader, fh)
	return st
}

// readListing reads the listing of in.NodeId from rawUnion's handle for
// it, opening one when there is none, and releases the handle once the
// end is reached (a read that adds nothing) or the read fails.
func (r *rawUnion) readListing(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList,
	read func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status) fuse.Status {
	l := r.lockListing(in.NodeId)
	defer l.mu.Unlock()
	if !l.open {
		fh, st := r.openHandle(cancel, &in.InHeader)
		if !st.Ok() {
			r.dropListing(in.NodeId, l)
			return st
		}
		l.fh, l.open = fh, true
	}
	from := *in
	from.Fh = l.fh
	st := read(cancel, &from, out)
	if !st.Ok() || out.Offset == in.Offset {
		r.closeListing(in.NodeId, l)
		r.dropListing(in.NodeId, l)
	}
	return st
}

// lockListing returns the listing record of node id, locked. A record
// found is used only if it is still the node's once locked: one dropped
// meanwhile (its listing ended, or it was evicted) would keep a new
// handle nobody releases.
func (r *rawUnion) lockListing(id uint64) *listing {
	for {
		l := r.listingFor(id)
		l.mu.Lock()
		r.mu.Lock()
		current := r.listings[id] == l
		r.mu.Unlock()
		if current {
			return l
		}
		l.mu.Unlock()
	}
}

// listingFor returns the listing record of node id, making room when
// too many listings were left unfinished.
func (r *rawUnion) listingFor(id uint64) *listing {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.listings[id]; ok {
		return l
	}
	if len(r.listings) >= maxListings {
		r.evictLocked()
	}
	l := &listing{}
	r.listings[id] = l
	return l
}

// evictLocked releases the handles of idle unfinished listings, so at
// most half of maxListings stay. A reader that comes back to an evicted
// listing gets a new handle, which seeks to its offset. r.mu is held.
func (r *rawUnion) evictLocked() {
	for id, l := range r.listings {
		if len(r.listings) < maxListings/2 {
			return
		}
		if !l.mu.TryLock() {
			continue
		}
		r.closeListing(id, l)
		delete(r.listings, id)
		l.mu.Unlock()
	}
}

// Forget releases the listing handle rawUnion holds for a node the
// kernel forgets, before the bridge drops the node: the kernel reads that
// node id no more, and the bridge cannot release a handle of a node it
// no longer knows (go-fuse 2.12 panics in detachFile).
func (r *rawUnion) Forget(nodeid, nlookup uint64) {
	r.dropNodeListing(nodeid)
	r.RawFileSystem.Forget(nodeid, nlookup)
	schedYield() // a forget has no reply
}

// dropNodeListing releases and forgets the listing of node id, if any.
func (r *rawUnion) dropNodeListing(id uint64) {
	r.mu.Lock()
	l, ok := r.listings[id]
	r.mu.Unlock()
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r.closeListing(id, l)
	r.dropListing(id, l)
}

// closeListing releases the handle listing l of node id holds, if any.
// l.mu is held.
func (r *rawUnion) closeListing(id uint64, l *listing) {
	if l.open {
		r.releaseHandle(&fuse.InHeader{NodeId: id}, l.fh)
		l.open = false
	}
}

// dropListing forgets l, unless it was replaced meanwhile.
func (r *rawUnion) dropListing(id uint64, l *listing) {
	r.mu.Lock()
	if r.listings[id] == l {
		delete(r.listings, id)
	}
	r.mu.Unlock()
}

// openHandle opens a directory handle of rawUnion's through the bridge.
func (r *rawUnion) openHandle(cancel <-chan struct{}, h *fuse.InHeader) (uint64, fuse.Status) {
	in := fuse.OpenIn{InHeader: *h, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}
	var out fuse.OpenOut
	if st := r.RawFileSystem.OpenDir(cancel, &in, &out); !st.Ok() {
		return 0, st
	}
	r.mu.Lock()
	r.opened++
	r.mu.Unlock()
	return out.Fh, fuse.OK
}

// releaseHandle releases a handle opened by openHandle.
func (r *rawUnion) releaseHandle(h *fuse.InHeader, fh uint64) {
	r.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: *h, Fh: fh})
}

// dropKernelListings makes the kernel drop its copy of the listing of
// every directory it knows, as an opendir would have done after a
// change in a read-only branch.
func (u *ufs) dropKernelListings() {
	seen := map[*fs.Inode]bool{}
	var walk func(n *fs.Inode)
	walk = func(n *fs.Inode) {
		if seen[n] || n.Mode()&syscall.S_IFMT != syscall.S_IFDIR {
			return
		}
		seen[n] = true
		_ = n.NotifyContent(0, 0)
		for _, ch := range n.Children() {
			walk(ch)
		}
	}
	walk(u.root.EmbeddedInode())
}
