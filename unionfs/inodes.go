package unionfs

import (
	"encoding/binary"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// devIno names a file in one branch filesystem.
type devIno struct{ dev, ino uint64 }

// inoMap hands out the union's inode numbers, which stay the same for
// the life of the mount: the first (dev, ino) under which a file is seen
// gets a number, and a copy-up adds the upper (dev, ino) as an alias of
// the same number.
//
// When every branch is on one file system (realDev), a file of it is
// numbered by its own inode number, unique on that file system, and a
// copy by its origin's (see originXattr), so the numbers also hold
// across mounts, as kernel overlayfs's do on one file system. The map
// then holds only the aliases; numbers it hands out (files of a branch
// added on another file system) start at allocBase, above any such. A
// number some alias answers with is no file's own any more (taken): a
// lower file removed from outside may give its inode to a new file
// while its copy still answers with its number.
type inoMap struct {
	mu      sync.Mutex
	next    uint64
	m       map[devIno]uint64
	real    bool
	realDev uint64
	taken   map[uint64]struct{}
}

// allocBase is the first number an inoMap with real numbers hands out.
const allocBase = 1 << 62

func newInoMap() *inoMap { return &inoMap{next: 2, m: map[devIno]uint64{}} }

// newRealInoMap is an inoMap that numbers the files of file system dev
// by their own inode numbers.
func newRealInoMap(dev uint64) *inoMap {
	return &inoMap{next: allocBase, m: map[devIno]uint64{}, real: true, realDev: dev, taken: map[uint64]struct{}{}}
}

// keyOf is the inode key of the file st describes.
func keyOf(st *syscall.Stat_t) devIno { return devIno{uint64(st.Dev), st.Ino} }

// own is k's own inode number, when it can be the union's. The caller
// holds m.mu.
func (m *inoMap) own(k devIno) (uint64, bool) {
	if m.real && k.dev == m.realDev && k.ino > 1 && k.ino < allocBase {
		if _, taken := m.taken[k.ino]; !taken {
			return k.ino, true
		}
	}
	return 0, false
}

// setLocked makes k answer with v. The caller holds m.mu.
func (m *inoMap) setLocked(k devIno, v uint64) {
	m.m[k] = v
	if m.real && (k.dev != m.realDev || k.ino != v) && v < allocBase {
		m.taken[v] = struct{}{}
	}
}

// numberLocked is k's number: its alias, its own, else a new one
// (recorded). The caller holds m.mu.
func (m *inoMap) numberLocked(k devIno) uint64 {
	if v, ok := m.m[k]; ok {
		return v
	}
	if v, ok := m.own(k); ok {
		return v
	}
	v := m.next
	m.next++
	m.m[k] = v
	return v
}

// get returns the stable number of k, allocating one on first sight.
func (m *inoMap) get(k devIno) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.numberLocked(k)
}

// ownNumber is k's own number, when it can be the union's.
func (m *inoMap) ownNumber(k devIno) (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.own(k)
}

// lookup returns the number recorded for k, if any.
func (m *inoMap) lookup(k devIno) (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[k]
	return v, ok
}

// join gives origin and upper one number: upper's when it has one, else
// origin's, else a new one.
func (m *inoMap) join(origin, upper devIno) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[upper]
	if !ok {
		v = m.numberLocked(origin)
		m.setLocked(upper, v)
	}
	if _, own := m.own(origin); !own || v != origin.ino {
		m.setLocked(origin, v)
	}
	return v
}

// setAlias makes upper answer with number v.
func (m *inoMap) setAlias(upper devIno, v uint64) {
	m.mu.Lock()
	m.setLocked(upper, v)
	m.mu.Unlock()
}

// drop forgets k, whose file no longer exists (its number may be reused
// by the branch filesystem for a new file).
func (m *inoMap) drop(k devIno) {
	m.mu.Lock()
	delete(m.m, k)
	m.mu.Unlock()
}

// unalias forgets the number copy k was given (numberCopy) once the copy
// is gone again, unmade by a failure: the number is free again for the
// file it belongs to unless another alias answers with it.
func (m *inoMap) unalias(k devIno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[k]
	if !ok {
		return
	}
	delete(m.m, k)
	if !m.real {
		return
	}
	for _, w := range m.m {
		if w == v {
			return
		}
	}
	delete(m.taken, v)
}

// fresh gives k a new number: k names a file just created, so an old
// mapping of k (a deleted file whose inode the branch reused) is stale.
func (m *inoMap) fresh(k devIno) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, k)
	if v, ok := m.own(k); ok {
		return v
	}
	v := m.next
	m.next++
	m.m[k] = v
	return v
}

// originXattr holds, on a copy in the rw branch, the union's inode number
// of the file it was copied from (8 bytes, little endian) and the path,
// from the union's root, that file was copied up from (when it fits
// maxOriginPath), so a later mount numbers the copy as this one did,
// also once it was renamed. The union hides it: it is not listed, read,
// set or removed through the mount, nor copied up.
const originXattr = "trusted.unionfs.ino"

// maxOriginPath is the longest origin path originXattr records; a copy
// from a longer one keeps its number after a remount only at its name.
const maxOriginPath = 1024

// ownXattr reports attribute names the union keeps to itself.
func ownXattr(name string) bool { return len(name) >= 16 && name[:16] == "trusted.unionfs." }

// setOrigin records on copy p that it numbers as v, the number of the
// file at orel it was copied from. A file system without trusted
// attributes keeps nothing: the copy then numbers as itself after a
// remount.
func setOrigin(p string, v uint64, orel string) {
	if len(orel) > maxOriginPath {
		orel = ""
	}
	b := make([]byte, 8, 8+len(orel))
	binary.LittleEndian.PutUint64(b, v)
	_ = unix.Lsetxattr(p, originXattr, append(b, orel...), 0)
}

// readOrigin returns the number and origin path recorded on p by
// setOrigin (the path is "" on a record that has none).
func readOrigin(p string) (v uint64, orel string, ok bool) {
	var b [8 + maxOriginPath]byte
	n, err := unix.Lgetxattr(p, originXattr, b[:])
	if err != nil || n < 8 {
		return 0, "", false
	}
	return binary.LittleEndian.Uint64(b[:8]), string(b[8:n]), true
}

// numberCopy makes the file at p of the rw branch, key upper, answer
// with number v: a copy of the file at orel, or a file moved from orel,
// that keeps the number its origin had. On one file system the copy
// records it (setOrigin) for later mounts; a file that records v
// already (a copy moved again) keeps its record, whose path is where
// its origin is.
func (u *ufs) numberCopy(p string, upper devIno, v uint64, orel string) {
	u.inos.setAlias(upper, v)
	if u.inos.real && v != upper.ino {
		if old, _, ok := readOrigin(p); !ok || old != v {
			setOrigin(p, v, orel)
		}
	}
}

// numberAs is numberCopy with the number of origin.
func (u *ufs) numberAs(p string, origin, upper devIno, orel string) {
	u.numberCopy(p, upper, u.inos.get(origin), orel)
}

// upperIno is the number of k, the file name of the rw branch in
// directory rel, whose merged contents come from layers: an alias
// recorded in this mount, else the origin recorded on the copy while
// the branches below still show that file where it was copied from (so
// the number is still its, not reused by the file system for another;
// see originHeld), else its own. The answer is remembered, so the
// attribute is read once. The caller holds u.ns.
func (u *ufs) upperIno(k devIno, layers []*branch, rel, name string) uint64 {
	if !u.inos.real {
		return u.inos.get(k)
	}
	if v, ok := u.inos.lookup(k); ok {
		return v
	}
	here := joinRel(rel, name)
	if p, release, errno := u.rw.confine(here); errno == 0 {
		v, orel, ok := readOrigin(p)
		release()
		if ok && u.originHeld(k, v, layers, rel, name, orel) {
			u.inos.setAlias(k, v)
			return v
		}
	}
	v := u.inos.get(k)
	u.inos.setAlias(k, v)
	return v
}

// originHeld reports whether number v, recorded on the copy k at name
// of directory rel (merged from layers) as that of its origin at orel,
// is still the origin's: the branches below the rw one show at orel a
// file numbered v. A copy at its origin's name hides the origin; one
// renamed since (orel elsewhere) may keep v only while the union does
// not show the origin at orel too (the rename left a whiteout there),
// unless that is the copy itself (another name of its hard-link group).
func (u *ufs) originHeld(k devIno, v uint64, layers []*branch, rel, name, orel string) bool {
	if orel == "" || orel == joinRel(rel, name) {
		le, ok := lowerHas(layers, u.rw, rel, name)
		return ok && le.originNumber() == v
	}
	var below []*branch
	for _, b := range u.branches {
		if b != u.rw {
			below = append(below, b)
		}
	}
	le, errno := lookupPath(below, orel)
	if errno != 0 || le.originNumber() != v {
		return false
	}
	ue, errno := lookupPath(u.branches, orel)
	return errno != 0 || ue.st.key() == k || ue.originNumber() != v
}

// originNumber is the inode number e's lower file has of its own: the
// lower file of an aliased entry.
func (e *entry) originNumber() uint64 {
	if e.link != nil {
		return e.link.origin.ino
	}
	return e.st.Ino
}
