package unionfs

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"slices"
	"sort"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirCacheState is what the daemon knows of the kernel's cached listing
// of a directory (FOPEN_CACHE_DIR), and the offsets of its names.
//
// Keeping the copy: the kernel drops it by itself when the directory
// changes through the mount (its iversion or mtime moves), but not when
// a branch changes from outside: a lower branch's new name leaves the
// top copy's mtime alone. So every opendir still computes the merged
// listing (through the name cache, whose entries live for the udba
// timeout) and compares its checksum with the one the kernel's copy was
// filled from; a differing listing makes the daemon invalidate the copy,
// and the new handle's snapshot fills it again. The kernel fills its copy
// from the READDIRs of any open handle, so the checksum names the copy
// only when one handle was open at a time since the last invalidation; an
// opendir while another handle is open makes it unknown (sumOK false)
// until the next opendir that finds none open invalidates and starts
// again.
//
// Offsets: a reader whose place is lost in the kernel's copy (refilled
// meanwhile from another handle's newer snapshot) looks it up there by
// the offset of the last entry it got. So while handles are open a name
// keeps one offset in every snapshot, new names get larger ones, and a
// snapshot lists its names in offset order: a reader then gets every name
// that stayed exactly once, whichever snapshot it continues in. When no
// handle is open the offsets are dropped, and the next snapshot numbers
// its names afresh in listing order (the same listing gives the same
// offsets, so the checksum still says when the kernel's copy holds it);
// not so when the kernel opens directories itself (see dirCacheClose).
type dirCacheState struct {
	sum    uint64 // checksum of the listing the kernel's copy holds
	sumOK  bool   // sum names the kernel's copy
	opened bool   // the node was opened before (else the kernel has no copy)
	open   int    // directory handles open

	live       []fuse.DirEntry // while handles are open: the latest snapshot
	nextOffset uint64          // the offset the next new name gets

	// refilled is when (monoNow) an opendir or rewinddir of a union with
	// short timeouts last had the kernel fill its copy afresh, by
	// READDIRPLUS (0: never, so the kernel holds no copy). See
	// dirCacheRefill.
	refilled int64
}

// monoBase is the origin of monoNow.
var monoBase = time.Now()

// monoNow is the time since monoBase in nanoseconds, on the monotonic
// clock.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// dirCacheRefill decides, for an opendir of a union with short timeouts
// (udba=reval), whether the kernel may serve the listing from its copy.
// A copy alone would cost a walk more than it saves: the names it lists
// outlive their entry timeouts there, and each would then be looked up
// on its own, where a READDIRPLUS renews a buffer of them at once. So
// the copy serves only when it holds the current listing (keep, from
// dirCacheOpen) and was filled within the first three quarters of window,
// the time names and attributes stay cached: the names it renewed then
// are still good for the reader to stat. Otherwise this handle fills it
// again, and dirCacheRefill reports whether the kernel holds an old copy
// to drop first.
func (n *node) dirCacheRefill(keep bool, window time.Duration) (drop bool) {
	now := monoNow()
	n.mu.Lock()
	defer n.mu.Unlock()
	c := &n.dirLocked().cache
	if keep && c.refilled != 0 && now-c.refilled < int64(window*3/4) {
		return false
	}
	drop = c.refilled != 0
	n.refilledLocked(now, window)
	return drop
}

// refilledLocked records that the kernel's copy is filled afresh at now,
// and has it dropped once window passed if a handle is open then: the
// kernel answers a rewinddir from its copy, and the reader must see the
// directory as it is by then, changes to a branch from outside included
// (without an open handle the next opendir decides). n.mu is held.
func (n *node) refilledLocked(now int64, window time.Duration) {
	n.dirLocked().cache.refilled = now
	time.AfterFunc(window, func() {
		n.mu.Lock()
		c := &n.dirLocked().cache
		expired := c.refilled == now && c.open > 0
		n.mu.Unlock()
		if expired {
			_ = n.NotifyContent(0, 0)
		}
	})
}

// firstOffset is the offset of the first name; "." and ".." have 1 and 2.
const firstOffset = 3

// dirCacheOpen records an opendir: it makes the snapshot of the merged
// listing ents and reports whether the kernel's cached listing may be
// kept. A node opened for the first time has nothing cached (the
// kernel's inode came with it), so there is nothing to drop: the
// invalidation, which also drops the attributes, would cost a GETATTR.
func (n *node) dirCacheOpen(ents []fuse.DirEntry) (ds *dirSnapshot, keep bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ds = n.snapshotLocked(ents)
	sum := listingSum(ds.entries)
	c := &n.dirLocked().cache
	keep = !c.opened || c.sumOK && c.sum == sum && c.open == 0
	c.opened = true
	c.sum, c.sumOK = sum, c.open == 0
	c.open++
	return ds, keep
}

// dirCacheRewind makes the new snapshot of a rewinddir. The kernel asks
// only when its copy is gone; this snapshot may fill it, and need not
// match the checksum. window is as for dirCacheRefill (0: long timeouts,
// or none).
func (n *node) dirCacheRewind(ents []fuse.DirEntry, window time.Duration) *dirSnapshot {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dirLocked().cache.sumOK = false
	if window > 0 {
		n.refilledLocked(monoNow(), window)
	}
	return n.snapshotLocked(ents)
}

// dirCacheClose records a releasedir. When the kernel opens
// directories without a request (zeroOpendir), a reader of its cached
// copy holds no handle the daemon knows of, so names keep their offsets
// for the node's life.
func (n *node) dirCacheClose() {
	n.mu.Lock()
	c := &n.dirLocked().cache
	c.open--
	if c.open == 0 && !n.u.zeroOpendir() {
		c.live = nil
	}
	n.mu.Unlock()
}

// snapshotLocked gives the names of ents their offsets and returns them
// in offset order after "." and "..". n.mu is held.
func (n *node) snapshotLocked(ents []fuse.DirEntry) *dirSnapshot {
	c := &n.dirLocked().cache
	list := make([]fuse.DirEntry, 0, len(ents)+2)
	list = append(list, n.dotEntries()...)
	if c.live == nil {
		// No handle open: number the names afresh, in listing order.
		c.nextOffset = firstOffset
		for _, e := range ents {
			e.Off = c.nextOffset
			c.nextOffset++
			list = append(list, e)
		}
	} else {
		// Names of the open handles' snapshots keep their offsets.
		old := make(map[string]uint64, len(c.live))
		for _, e := range c.live {
			old[e.Name] = e.Off
		}
		for _, e := range ents {
			off, ok := old[e.Name]
			if !ok {
				off = c.nextOffset
				c.nextOffset++
			}
			e.Off = off
			list = append(list, e)
		}
		slices.SortFunc(list[2:], func(a, b fuse.DirEntry) int { return cmp.Compare(a.Off, b.Off) })
	}
	c.live = list
	return &dirSnapshot{entries: list}
}

// listingSum is a checksum of a listing as the kernel caches it: names,
// inode numbers, types and offsets, in order.
func listingSum(list []fuse.DirEntry) uint64 {
	h := fnv.New64a()
	var b []byte
	for _, e := range list {
		b = append(b[:0], e.Name...)
		b = append(b, 0)
		b = binary.LittleEndian.AppendUint64(b, e.Ino)
		b = binary.LittleEndian.AppendUint32(b, e.Mode)
		b = binary.LittleEndian.AppendUint64(b, e.Off)
		_, _ = h.Write(b)
	}
	return h.Sum64()
}

// dirSnapshot is the listing one directory handle serves, in offset
// order; each entry's Off is its offset.
type dirSnapshot struct {
	entries []fuse.DirEntry
	idx     int
	listed  *listedTops // where the listing found its files; may be nil
}

// names returns the snapshot's names in offset order.
func (s *dirSnapshot) names() []string {
	out := make([]string, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e.Name)
	}
	return out
}

// HasNext reports whether entries are left.
func (s *dirSnapshot) HasNext() bool { return s.idx < len(s.entries) }

// Next returns the next entry.
func (s *dirSnapshot) Next() (fuse.DirEntry, syscall.Errno) {
	e := s.entries[s.idx]
	s.idx++
	return e, 0
}

// seek moves past the entry with offset off: to the first entry whose
// offset is larger (the entry may be gone from this snapshot).
func (s *dirSnapshot) seek(off uint64) {
	s.idx = sort.Search(len(s.entries), func(i int) bool { return s.entries[i].Off > off })
}
