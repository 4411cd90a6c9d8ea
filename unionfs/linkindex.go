package unionfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// linkIndexName is the directory of the rw branch that keeps copied-up
// lower hard-link groups together, named as aufs names its pseudo-links.
const linkIndexName = ".wh..wh.plnk"

// linkIndex keeps a lower hard-link group one file once the union has
// copied one of its names up, in any directory and across mounts, as
// overlayfs's index=on does. The copy of a file with more than one
// lower name is also linked into the index under the lower file's
// device and inode number. Every other name of the group then resolves
// to that copy instead of its lower data (an aliased entry, see
// entry.link), and its own copy-up is a hard link of the copy (a
// link-up), not a second copy.
//
// Beside each copy the index keeps a symlink "KEY.n" whose target
// "L:C" holds the group's lower link count L and the count C of its
// lower names the union has consumed (linked up or whited out): the
// union's link count of the copy is its own, less the index's link,
// plus the lower names not consumed yet. A group none of whose names
// was copied up has the count alone once a name of it is whited out,
// and its lower file shows L - C links.
type linkIndex struct {
	rw    *branch
	dir   string      // for messages
	fd    int         // the directory, once ready
	ready atomic.Bool // the directory exists and is open; nothing to look for before
	// keep registers a descriptor to close once the serving ends.
	keep func(fd int)

	mu     sync.Mutex
	groups map[devIno]*linkGroup // by the copy's (rw) key
	whited map[devIno]*linkGroup // counts of groups before a copy, by lower key
	// anyGroup says groups held an entry once: before that, a file
	// with one link needs no look in it (see fixNlink).
	anyGroup atomic.Bool
}

// linkGroup is what the index knows of one copied-up group.
type linkGroup struct {
	name     string // the index entry: the lower key
	origin   devIno // the lower file
	lower    uint64 // link count of the lower file when copied up
	consumed uint64 // lower names linked up or whited out
	// pending: the copy is in the index but not yet in place (see add).
	pending bool
}

// linkAlias is how an entry of a lower name whose group was copied up
// reaches the copy.
type linkAlias struct {
	path   string // the copy, through the index's descriptor
	origin devIno // the lower file
}

// openLinkIndex reads the index of the rw branch rw, and removes the
// copies no name of the union shows any more, and settles what a crash
// left pending (see add). An entry without a count counts one name
// consumed. keep registers the
// descriptor the index is reached through (see confine).
func openLinkIndex(rw *branch, keep func(fd int)) (*linkIndex, error) {
	x := &linkIndex{rw: rw, dir: rw.join(linkIndexName), fd: -1, keep: keep, groups: map[devIno]*linkGroup{}, whited: map[devIno]*linkGroup{}}
	fd, err := openBeneath(rw.rootFd, linkIndexName, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err == unix.ENOENT {
		return x, nil
	}
	if err != nil {
		return nil, fmt.Errorf("link index %s: %w", x.dir, err)
	}
	x.fd = fd
	keep(fd)
	ents, err := os.ReadDir(procFdPath(fd, "."))
	if err != nil {
		return nil, fmt.Errorf("link index %s: %w", x.dir, err)
	}
	x.ready.Store(true)
	for _, d := range ents {
		name, isCount := strings.CutSuffix(d.Name(), ".n")
		origin, ok := parseEntryName(name)
		if !ok {
			continue // a count being replaced, or nothing of the index
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(x.path(name), &st); err != nil {
			if isCount {
				g := x.readCount(name, origin, 0, 0)
				if g.pending {
					// A crash before the copy reached the index: the
					// count goes back to the names whited out, if any.
					g.pending = false
					if g.consumed == 0 {
						_ = os.Remove(x.path(name + ".n"))
						continue
					}
					_ = x.writeCount(g)
				}
				if g.lower > 0 {
					x.whited[origin] = g
				}
			}
			continue
		}
		if isCount {
			continue
		}
		g := x.readCount(name, origin, uint64(st.Nlink), 1)
		if g.pending {
			g.pending = false
			if st.Nlink == 1 {
				// A crash before the copy was put in place: it stands
				// for no name. The group is as it was before.
				_ = os.Remove(x.path(name))
				if g.consumed > 0 {
					_ = x.writeCount(g)
					x.whited[origin] = g
				} else {
					_ = os.Remove(x.path(name + ".n"))
				}
				continue
			}
			// A crash after: the copy stands for its first name.
			g.consumed++
			_ = x.writeCount(g)
		}
		if st.Nlink == 1 && g.left() == 0 {
			// No name of the group is left: the copy goes.
			_ = os.Remove(x.path(name))
			_ = os.Remove(x.path(name + ".n"))
			continue
		}
		x.groups[keyOf(&st)] = g
		x.anyGroup.Store(true)
	}
	return x, nil
}

// readCount reads the counts of the group of index entry name; lower
// and consumed are the counts of a group without a record.
func (x *linkIndex) readCount(name string, origin devIno, lower, consumed uint64) *linkGroup {
	g := &linkGroup{name: name, origin: origin, lower: lower, consumed: consumed}
	if t, err := os.Readlink(x.path(name + ".n")); err == nil {
		t, g.pending = strings.CutSuffix(t, pendingMark)
		l, c, ok := strings.Cut(t, ":")
		lv, err1 := strconv.ParseUint(l, 10, 64)
		cv, err2 := strconv.ParseUint(c, 10, 64)
		if ok && err1 == nil && err2 == nil {
			g.lower, g.consumed = lv, cv
		}
	}
	return g
}

// pendingMark ends the count of a group whose copy is not yet in place.
const pendingMark = ":p"

// parseEntryName is the lower key an index entry name stands for.
func parseEntryName(name string) (devIno, bool) {
	d, i, ok := strings.Cut(name, "-")
	dev, err1 := strconv.ParseUint(d, 10, 64)
	ino, err2 := strconv.ParseUint(i, 10, 64)
	return devIno{dev, ino}, ok && err1 == nil && err2 == nil
}

// entryName is the index name of the lower file k.
func (x *linkIndex) entryName(k devIno) string {
	return strconv.FormatUint(k.dev, 10) + "-" + strconv.FormatUint(k.ino, 10)
}

// resolve turns e, a lower non-directory with more than one name, into
// an alias of its group's copy when the index has one; topSt, when not
// nil, then gets the copy's stat.
func (x *linkIndex) resolve(e *entry, topSt *syscall.Stat_t) {
	if x == nil || e.st.Nlink <= 1 || e.isDir() || !x.ready.Load() {
		return
	}
	origin := e.st.key()
	p := x.path(x.entryName(origin))
	var st syscall.Stat_t
	if syscall.Lstat(p, &st) != nil || st.Mode&syscall.S_IFMT != e.st.Mode&syscall.S_IFMT {
		return
	}
	e.st = idOf(&st)
	e.link = &linkAlias{path: p, origin: origin}
	if topSt != nil {
		*topSt = st
	}
}

// add links tmp, the new copy of the lower file origin (before it is
// renamed into place), into the index. The group's count is written
// first, marked pending: until the placement is settled (settle) the
// copy stands for no name, so a crash before leaves a pending entry a
// later mount drops (see openLinkIndex). The caller holds u.ns
// exclusively.
func (x *linkIndex) add(tmp string, origin *fileID) (*linkGroup, syscall.Errno) {
	if errno := x.ensureDir(); errno != 0 {
		return nil, errno
	}
	g := &linkGroup{name: x.entryName(origin.key()), origin: origin.key(), lower: origin.Nlink, pending: true}
	x.mu.Lock()
	if w := x.whited[origin.key()]; w != nil {
		g.consumed = w.consumed
	}
	x.mu.Unlock()
	if errno := x.writeCount(g); errno != 0 {
		return nil, errno
	}
	p := x.path(g.name)
	var st syscall.Stat_t
	err := syscall.Link(tmp, p)
	if err == nil {
		if err = syscall.Lstat(p, &st); err != nil {
			_ = os.Remove(p)
		}
	}
	if err != nil {
		x.restoreCount(origin.key())
		return nil, errnoOf(err)
	}
	x.mu.Lock()
	x.groups[keyOf(&st)] = g
	x.mu.Unlock()
	x.anyGroup.Store(true)
	return g, 0
}

// settle records a placement as final (see placeLower): a group's copy
// in place consumes its first lower name, a link of a copy one more.
// The caller holds u.ns exclusively.
func (x *linkIndex) settle(p placement) {
	switch {
	case x == nil:
	case p.kind == placedIndexed:
		x.mu.Lock()
		p.group.pending = false
		p.group.consumed++
		x.mu.Unlock()
		_ = x.writeCount(p.group)
	case p.kind == placedLinked:
		x.consume(p.copy)
	}
}

// restoreCount writes the count origin's group had before a copy was
// added: the names whited out, or none.
func (x *linkIndex) restoreCount(origin devIno) {
	x.mu.Lock()
	w := x.whited[origin]
	x.mu.Unlock()
	if w != nil {
		_ = x.writeCount(w)
	} else {
		_ = os.Remove(x.path(x.entryName(origin) + ".n"))
	}
}

// ensureDir makes the index directory on first need. The caller holds
// u.ns exclusively.
func (x *linkIndex) ensureDir() syscall.Errno {
	if !x.ready.Load() {
		fd, errno := x.rw.openSubdir(linkIndexName)
		if errno != 0 {
			return errno
		}
		x.fd = fd
		x.keep(fd)
		x.ready.Store(true)
	}
	return 0
}

// path names name in the index directory, through its descriptor.
func (x *linkIndex) path(name string) string { return procFdPath(x.fd, name) }

// remove takes the entry of origin out again, after a copy-up that
// added it failed.
func (x *linkIndex) remove(origin devIno) {
	name := x.entryName(origin)
	var st syscall.Stat_t
	if syscall.Lstat(x.path(name), &st) == nil {
		x.mu.Lock()
		delete(x.groups, keyOf(&st))
		x.mu.Unlock()
	}
	_ = os.Remove(x.path(name))
	x.restoreCount(origin)
}

// whiteout counts a lower name of e, a lower non-directory, as
// consumed when the union whites it out: e's group, or its copy when e
// is aliased, shows one link less. The caller holds u.ns exclusively.
func (x *linkIndex) whiteout(e *entry) {
	switch {
	case x == nil || e.isDir():
	case e.link != nil:
		x.consume(e.st.key())
	case e.st.Nlink > 1:
		if x.ensureDir() != 0 {
			return
		}
		k := e.st.key()
		x.mu.Lock()
		g := x.whited[k]
		if g == nil {
			g = &linkGroup{name: x.entryName(k), lower: e.st.Nlink}
			x.whited[k] = g
		}
		g.consumed++
		x.mu.Unlock()
		_ = x.writeCount(g)
	}
}

// consume counts one more lower name of the group of copy (rw key) as
// consumed. The caller holds u.ns exclusively.
func (x *linkIndex) consume(copy devIno) {
	if x == nil {
		return
	}
	x.mu.Lock()
	g := x.groups[copy]
	if g != nil {
		g.consumed++
	}
	x.mu.Unlock()
	if g != nil {
		_ = x.writeCount(g)
	}
}

// writeCount records g's counts, replacing the old record atomically.
func (x *linkIndex) writeCount(g *linkGroup) syscall.Errno {
	p := x.path(g.name + ".n")
	tmp := p + ".tmp"
	_ = os.Remove(tmp)
	x.mu.Lock()
	target := strconv.FormatUint(g.lower, 10) + ":" + strconv.FormatUint(g.consumed, 10)
	if g.pending {
		target += pendingMark
	}
	x.mu.Unlock()
	if err := syscall.Symlink(target, tmp); err != nil {
		return errnoOf(err)
	}
	return errnoOf(syscall.Rename(tmp, p))
}

// fixNlink sets st.Nlink to the union's link count when st is the stat
// of a group's copy (its own count, less the index's link, plus the
// group's lower names not consumed yet) or of a lower file some of whose
// names were whited out (less those).
func (x *linkIndex) fixNlink(st *syscall.Stat_t) {
	// A copy whose rw names were all removed has one link (the index's)
	// and may still show as its group's lower names.
	if x == nil || st.Nlink == 0 || st.Nlink == 1 && !x.anyGroup.Load() || !x.ready.Load() {
		return
	}
	k := keyOf(st)
	x.mu.Lock()
	defer x.mu.Unlock()
	if g := x.groups[k]; g != nil {
		st.Nlink = st.Nlink - 1 + g.left()
	} else if g := x.whited[k]; g != nil {
		st.Nlink = g.left()
	}
}

// left is the count of g's lower names not consumed.
func (g *linkGroup) left() uint64 {
	if g.lower > g.consumed {
		return g.lower - g.consumed
	}
	return 0
}

// fixNlinkStatx is fixNlink for a statx result.
func (x *linkIndex) fixNlinkStatx(stx *unix.Statx_t) {
	if x == nil || stx.Nlink == 0 || stx.Nlink == 1 && !x.anyGroup.Load() {
		return
	}
	st := syscall.Stat_t{Dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), Ino: stx.Ino, Nlink: uint64(stx.Nlink)}
	x.fixNlink(&st)
	stx.Nlink = uint32(st.Nlink)
}
