package unionfs

import (
	"sync"

	"syscall"
)

// devIno names a file in one branch filesystem.
type devIno struct{ dev, ino uint64 }

// inoMap hands out inode numbers that stay the same for the life of the
// mount: the first (dev, ino) under which a file is seen gets a number,
// and a copy-up adds the upper (dev, ino) as an alias of the same number.
type inoMap struct {
	mu   sync.Mutex
	next uint64
	m    map[devIno]uint64
}

func newInoMap() *inoMap { return &inoMap{next: 2, m: map[devIno]uint64{}} }

// keyOf is the inode key of the file st describes.
func keyOf(st *syscall.Stat_t) devIno { return devIno{uint64(st.Dev), st.Ino} }

// get returns the stable number of k, allocating one on first sight.
func (m *inoMap) get(k devIno) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.m[k]; ok {
		return v
	}
	v := m.next
	m.next++
	m.m[k] = v
	return v
}

// alias makes upper answer with the number of origin.
func (m *inoMap) alias(origin, upper devIno) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[origin]
	if !ok {
		v = m.next
		m.next++
		m.m[origin] = v
	}
	m.m[upper] = v
	return v
}

// join gives origin and upper one number: upper's when it has one, else
// origin's, else a new one.
func (m *inoMap) join(origin, upper devIno) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[upper]
	if !ok {
		if v, ok = m.m[origin]; !ok {
			v = m.next
			m.next++
		}
		m.m[upper] = v
	}
	m.m[origin] = v
	return v
}

// setAlias makes upper answer with number v.
func (m *inoMap) setAlias(upper devIno, v uint64) {
	m.mu.Lock()
	m.m[upper] = v
	m.mu.Unlock()
}

// drop forgets k, whose file no longer exists (its number may be reused
// by the branch filesystem for a new file).
func (m *inoMap) drop(k devIno) {
	m.mu.Lock()
	delete(m.m, k)
	m.mu.Unlock()
}

// fresh gives k a new number: k names a file just created, so an old
// mapping of k (a deleted file whose inode the branch reused) is stale.
func (m *inoMap) fresh(k devIno) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.next
	m.next++
	m.m[k] = v
	return v
}
