package unionfs

import (
	"slices"
	"sync"
	"syscall"
	"time"
)

// nameCache remembers the names of directories of the read-only (RO and
// RR) branches of one union, so a lookup through a deep stack costs map
// lookups instead of two lstat()s per branch. Entries live for ttl: a
// lower branch changed from outside shows through after it (the udba
// rule of aufs). The rw branch, which the union changes itself, is never
// cached. Cached values are immutable; a stale one is replaced whole.
type nameCache struct {
	ttl time.Duration

	mu        sync.Mutex
	dirs      map[dirKey]*branchDir    // one branch's directory listing
	merged    map[string]*mergedDir    // by directory path relative to the branch roots
	building  map[string]chan struct{} // merged indexes being built, closed when done
	seen      map[string]time.Time     // directories looked up once, until when (see indexWorth)
	epoch     uint64                   // bumped by reset: older builds are not stored
	nextSweep time.Time                // when expired entries are dropped next
}

// minNameCacheTTL is the shortest entry timeout for which the name cache
// is kept: below it (udba=notify asks for 1ns) filling the cache would
// cost more than it saves.
const minNameCacheTTL = 10 * time.Millisecond

// dirKey names directory rel of branch b.
type dirKey struct {
	b   *branch
	rel string
}

// branchDir is the listing of one directory of one branch.
type branchDir struct {
	ents    []dirent         // in getdents order, without . and ..
	idx     map[string]int32 // name -> index into ents
	missing bool             // the branch has no directory there
	expires time.Time
}

// has reports whether the listing holds name.
func (d *branchDir) has(name string) bool {
	_, ok := d.idx[name]
	return ok
}

// Flags of a hit: what one branch holds of a name.
const (
	hitEntry    = 1 << iota // the name itself
	hitDir                  // ... and it is a directory
	hitWhiteout             // its whiteout, in a branch whose whiteouts count
)

// hit is a branch (an index into mergedDir.layers) holding a name.
type hit struct {
	i     int32
	flags uint8
}

// mergedDir indexes directory rel over a run of cached branches: for
// each name (whiteouts by the name they hide), the branches that hold
// it, top first.
type mergedDir struct {
	layers  []*branch
	hits    map[string][]hit
	expires time.Time
}

func newNameCache(ttl time.Duration) *nameCache {
	return &nameCache{ttl: ttl, dirs: map[dirKey]*branchDir{}, merged: map[string]*mergedDir{}, building: map[string]chan struct{}{}, seen: map[string]time.Time{}}
}

// reset forgets everything (the stack changed).
func (c *nameCache) reset() {
	c.mu.Lock()
	c.dirs = map[dirKey]*branchDir{}
	c.merged = map[string]*mergedDir{}
	c.seen = map[string]time.Time{}
	c.epoch++
	c.mu.Unlock()
}

// forgetDir drops what the cache holds of directory rel (of any branch),
// so the next lookup there reads the branches.
func (c *nameCache) forgetDir(rel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.dirs {
		if k.rel == rel {
			delete(c.dirs, k)
		}
	}
	delete(c.merged, rel)
	c.epoch++ // an index of rel being built now may predate the change
}

// sweepLocked drops expired entries, at most once per ttl.
func (c *nameCache) sweepLocked(now time.Time) {
	if now.Before(c.nextSweep) {
		return
	}
	c.nextSweep = now.Add(c.ttl)
	for k, d := range c.dirs {
		if !now.Before(d.expires) {
			delete(c.dirs, k)
		}
	}
	for k, m := range c.merged {
		if !now.Before(m.expires) {
			delete(c.merged, k)
		}
	}
	for k, until := range c.seen {
		if !now.Before(until) {
			delete(c.seen, k)
		}
	}
}

// indexWorth says whether a lookup in directory rel should go through
// the merged index over layers: when the index is built (or being
// built), or when rel was looked up before within the ttl, which
// promises more lookups there. The first lookup in a directory goes to
// the branches themselves: a few lstat()s down to the first branch that
// has the name, where building the index reads the directory in every
// branch (the first stat in a fresh 128-layer mount took 3 ms so).
func (c *nameCache) indexWorth(layers []*branch, rel string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.merged[rel]; m != nil && now.Before(m.expires) && slices.Equal(m.layers, layers) {
		return true
	}
	if _, busy := c.building[rel]; busy {
		return true
	}
	if until, ok := c.seen[rel]; ok && now.Before(until) {
		return true
	}
	c.sweepLocked(now)
	c.seen[rel] = now.Add(c.ttl)
	return false
}

// listing returns the names of directory rel of branch b, reading the
// directory when the cache has no fresh copy.
func (c *nameCache) listing(b *branch, rel string, now time.Time) (*branchDir, error) {
	k := dirKey{b, rel}
	c.mu.Lock()
	d, epoch := c.dirs[k], c.epoch
	c.mu.Unlock()
	if d != nil && now.Before(d.expires) {
		return d, nil
	}
	d = &branchDir{expires: now.Add(c.ttl)}
	ents, err := b.readDir(rel)
	switch {
	case err == syscall.ENOENT || err == syscall.ENOTDIR:
		d.missing = true
	case err != nil:
		return nil, err
	}
	d.ents = ents
	d.idx = make(map[string]int32, len(ents))
	for i, e := range ents {
		if e.typ == syscall.DT_UNKNOWN {
			var st syscall.Stat_t
			if b.lstat(joinRel(rel, e.name), &st) == nil {
				ents[i].typ = uint8(st.Mode & syscall.S_IFMT >> 12)
			}
		}
		d.idx[e.name] = int32(i)
	}
	c.mu.Lock()
	if c.epoch == epoch {
		c.sweepLocked(now)
		c.dirs[k] = d
	}
	c.mu.Unlock()
	return d, nil
}

// mergedIndex returns the index of directory rel over layers (all
// cached branches), building it from the branch listings when needed.
func (c *nameCache) mergedIndex(layers []*branch, rel string, now time.Time) (*mergedDir, error) {
	c.mu.Lock()
	for {
		m := c.merged[rel]
		if m != nil && now.Before(m.expires) && slices.Equal(m.layers, layers) {
			c.mu.Unlock()
			return m, nil
		}
		// Concurrent lookups in a cold directory build its index once.
		w, busy := c.building[rel]
		if !busy {
			break
		}
		c.mu.Unlock()
		<-w
		c.mu.Lock()
	}
	done := make(chan struct{})
	c.building[rel] = done
	epoch := c.epoch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.building, rel)
		c.mu.Unlock()
		close(done)
	}()
	m := &mergedDir{layers: append([]*branch(nil), layers...), hits: map[string][]hit{}, expires: now.Add(c.ttl)}
	for i, b := range layers {
		d, err := c.listing(b, rel, now)
		if err != nil {
			return nil, err
		}
		if d.expires.Before(m.expires) {
			m.expires = d.expires
		}
		for _, e := range d.ents {
			name, flags := e.name, uint8(hitEntry)
			if isWhiteoutName(name) {
				if !b.searchesWhiteouts() || name == opqMarker {
					continue
				}
				name, flags = name[len(whPrefix):], hitWhiteout
			} else if e.typ == syscall.DT_DIR {
				flags |= hitDir
			}
			hs := m.hits[name]
			if n := len(hs); n > 0 && hs[n-1].i == int32(i) {
				hs[n-1].flags |= flags
				continue
			}
			m.hits[name] = append(hs, hit{i: int32(i), flags: flags})
		}
	}
	c.mu.Lock()
	if c.epoch == epoch {
		c.sweepLocked(now)
		c.merged[rel] = m
	}
	c.mu.Unlock()
	return m, nil
}
