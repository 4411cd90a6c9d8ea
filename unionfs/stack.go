package unionfs

import (
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Names aufs reserves in every branch.
const (
	whPrefix  = ".wh."
	opqMarker = ".wh..wh..opq"
	workName  = ".wh..wh.orph" // temporary files of copy-up, in the rw branch
)

// branch is one directory of the live stack.
type branch struct {
	path string
	// mode is RW, RO or RR, read with modeNow: a read-only branch's
	// changes between RO and RR on a live mount (Server.ModBranch); the
	// rw branch's never does.
	mode atomic.Int32
	dev  uint64
	// rootFd is the branch root opened for confined paths (see
	// confine), -1 when there is none.
	rootFd int
	open   int // handles holding a descriptor in this branch (guarded by ufs.stateMu)
	// cache holds this branch's directory names; nil for the rw branch
	// and when caching is off.
	cache *nameCache
	// links is the union's link index, which a multiply linked file of
	// this branch may have a copy in; nil for the rw branch.
	links *linkIndex
}

func (b *branch) join(rel string) string {
	if rel == "" {
		return b.path
	}
	return b.path + "/" + rel
}

// newBranch is a branch of mode at path, on device dev, not yet opened.
func newBranch(path string, mode Mode, dev uint64) *branch {
	b := &branch{path: path, dev: dev, rootFd: -1}
	b.mode.Store(int32(mode))
	return b
}

// modeNow is b's mode.
func (b *branch) modeNow() Mode { return Mode(b.mode.Load()) }

// isRW says whether b is the rw branch.
func (b *branch) isRW() bool { return b.modeNow() == RW }

// searchesWhiteouts reports whether whiteouts and opaque markers in b count.
func (b *branch) searchesWhiteouts() bool { return b.modeNow() != RR }

// entry is the result of looking a name up through a stack of directory
// layers: the top-most branch holding it, what its stat there says of its
// identity, and for a directory every branch that contributes to its
// merged contents.
type entry struct {
	top    *branch
	st     fileID
	layers []*branch // for directories: contributing branches, top first
	// link, for a lower name whose hard-link group was copied up, leads
	// to the copy, which st then describes (see linkIndex).
	link *linkAlias
}

// fileID is what an entry keeps of the stat of its top-most copy: the
// file's identity, type and link count. Whatever else a caller needs it
// stats afresh; the whole stat would cost 112 bytes more for every name
// the kernel holds.
type fileID struct {
	Dev, Ino, Nlink uint64
	Mode            uint32
}

// idOf is the fileID of st.
func idOf(st *syscall.Stat_t) fileID {
	return fileID{Dev: uint64(st.Dev), Ino: st.Ino, Nlink: uint64(st.Nlink), Mode: st.Mode}
}

// key is the inode key of id (see inoMap).
func (id *fileID) key() devIno { return devIno{id.Dev, id.Ino} }

// newEntry is the entry of a file whose top-most copy, in top, has stat st.
func newEntry(top *branch, st *syscall.Stat_t) *entry { return &entry{top: top, st: idOf(st)} }

// lstatEntry is the entry of the file at p, its top-most copy, in top.
func lstatEntry(top *branch, p string) (*entry, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, err
	}
	return newEntry(top, &st), nil
}

func (e *entry) isDir() bool { return e.st.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// onlyIn says directory e exists in branch b alone.
func (e *entry) onlyIn(b *branch) bool { return len(e.layers) == 1 && e.layers[0] == b }

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func exists(p string) bool {
	var st syscall.Stat_t
	return syscall.Lstat(p, &st) == nil
}

// lookupIn finds name in directory rel whose merged contents come from
// layers (top first). It honours whiteouts and opaque directories of
// branches that are not RR. The branches with a name cache (all but the
// rw branch, which can only be on top) are searched through it.
func lookupIn(layers []*branch, rel, name string) (*entry, syscall.Errno) {
	return lookupInStat(layers, rel, name, nil)
}

// lookupInStat is lookupIn that also leaves the whole stat of the
// top-most copy in topSt, when not nil.
func lookupInStat(layers []*branch, rel, name string, topSt *syscall.Stat_t) (*entry, syscall.Errno) {
	e, errno := lookupBranches(layers, rel, name, topSt)
	if errno == 0 && e.top.links != nil {
		e.top.links.resolve(e, topSt)
	}
	return e, errno
}

// lookupBranches is lookupInStat without the link index.
func lookupBranches(layers []*branch, rel, name string, topSt *syscall.Stat_t) (*entry, syscall.Errno) {
	var e *entry
	crel := joinRel(rel, name)
	tried := false
	for i, b := range layers {
		if b.cache != nil && !tried {
			tried = true
			// The cached branches reach to the bottom: their answer is final.
			if ok := lookupCached(&e, layers[i:], rel, name, topSt); ok {
				if e == nil {
					return nil, syscall.ENOENT
				}
				return e, 0
			}
		}
		var st syscall.Stat_t
		// A whiteout in the last layer hides nothing: not looked for.
		whited, err := b.lookupName(rel, name, &st, i < len(layers)-1 && b.searchesWhiteouts())
		if err == nil {
			isDir := st.Mode&syscall.S_IFMT == syscall.S_IFDIR
			if e == nil {
				e = newEntry(b, &st)
				if topSt != nil {
					*topSt = st
				}
				if !isDir {
					return e, 0
				}
			} else if !isDir {
				// A non-directory below a directory ends the merge.
				return e, 0
			}
			e.layers = append(e.layers, b)
			if b.searchesWhiteouts() && b.exists(crel+"/"+opqMarker) {
				return e, 0
			}
		} else if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENOTDIR) {
			if e == nil {
				return nil, errnoOf(err)
			}
			return e, 0
		}
		if whited {
			break
		}
	}
	if e == nil {
		return nil, syscall.ENOENT
	}
	return e, 0
}

// lookupCached continues lookupIn's search for name in directory rel
// through layers, which all have a name cache and reach to the bottom
// of the stack, with *ep the entry found above them (or nil). It is
// false, leaving *ep as it was, when the cache cannot answer (a branch
// directory could not be read, or a cached name vanished): the caller
// then asks the branches themselves.
func lookupCached(ep **entry, layers []*branch, rel, name string, topSt *syscall.Stat_t) (ok bool) {
	orig := *ep
	origLen := 0
	if orig != nil {
		origLen = len(orig.layers)
	}
	defer func() {
		if !ok { // leave *ep as it was for the fallback
			*ep = orig
			if orig != nil {
				orig.layers = orig.layers[:origLen]
			}
		}
	}()
	now := time.Now()
	if !layers[0].cache.indexWorth(layers, rel, now) {
		return false
	}
	m, err := layers[0].cache.mergedIndex(layers, rel, now)
	if err != nil {
		return false
	}
	crel := joinRel(rel, name)
	e := *ep
	for _, h := range m.hits[name] {
		b := layers[h.i]
		if h.flags&hitEntry != 0 {
			isDir := h.flags&hitDir != 0
			if e == nil {
				var st syscall.Stat_t
				if b.lstat(crel, &st) != nil {
					return false
				}
				e = newEntry(b, &st)
				if topSt != nil {
					*topSt = st
				}
				isDir = e.isDir()
				*ep = e
				if !isDir {
					return true
				}
			} else if !isDir {
				return true
			}
			e.layers = append(e.layers, b)
			if b.searchesWhiteouts() {
				d, err := b.cache.listing(b, crel, now)
				if err != nil {
					return false
				}
				if d.has(opqMarker) {
					return true
				}
			}
		}
		if h.flags&hitWhiteout != 0 {
			return true
		}
	}
	return true
}

// lookupPath finds rel, a path from the union's root, in layers, the
// branches whose roots merge there, name by name as the kernel's lookups
// do (whiteouts and opaque directories hide what they hide).
func lookupPath(layers []*branch, rel string) (*entry, syscall.Errno) {
	var e *entry
	dir := ""
	for _, name := range strings.Split(rel, "/") {
		if e != nil {
			if !e.isDir() {
				return nil, syscall.ENOTDIR
			}
			layers = e.layers
		}
		var errno syscall.Errno
		if e, errno = lookupIn(layers, dir, name); errno != 0 {
			return nil, errno
		}
		dir = joinRel(dir, name)
	}
	return e, 0
}

// lowerHas reports whether name in rel is visible from the branches of
// layers below rw, as if rw held neither the name nor its whiteout.
func lowerHas(layers []*branch, rw *branch, rel, name string) (*entry, bool) {
	var below []*branch
	for _, b := range layers {
		if b != rw {
			below = append(below, b)
		}
	}
	e, errno := lookupIn(below, rel, name)
	return e, errno == 0
}

// isWhiteoutName reports names the union keeps to itself.
func isWhiteoutName(name string) bool { return strings.HasPrefix(name, whPrefix) }

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return syscall.EIO
}
