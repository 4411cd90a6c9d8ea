package unionfs

import (
	"syscall"
)

// treeCopy is a merged directory copied into a new directory of the
// work directory, to be put in place by a rename (a directory's rename
// or flattening). Besides the new tree, the copy changes the link index
// (groups' copies added, lower names consumed) and gives copies their
// origins' numbers; treeCopy keeps a record of those, so that abandon
// takes all of it back when the copy, or the step that was to put it in
// place, fails (a full rw branch, say): the union then shows what it
// showed before. Once the copy is in place, commit settles the index.
// The caller holds u.ns exclusively throughout.
type treeCopy struct {
	u        *ufs
	tmp      string      // the copy, in the work directory
	placed   []placement // what placing its files did to the link index
	numbered []devIno    // copies (rw keys) numbered as their origins
}

// copyTreeAside copies the merged directory e (at rel) into a new
// directory of the work directory, named for kind. On failure nothing of
// it is left.
func (u *ufs) copyTreeAside(kind string, e *entry, rel string) (*treeCopy, syscall.Errno) {
	tmp, errno := u.tempName(kind)
	if errno != 0 {
		return nil, errno
	}
	c := &treeCopy{u: u, tmp: tmp}
	if errno := c.copyDir(e, rel, tmp); errno != 0 {
		c.abandon()
		return nil, errno
	}
	return c, 0
}

// copyDir copies the merged directory e (at rel) into a new directory
// dst, recursively, keeping inode numbers for the copies; files the rw
// branch already holds are hard-linked, not copied, and the names of a
// lower hard-link group become links of one copy (see placeLower), so
// the group survives (nlink and the union's inode number stay one).
func (c *treeCopy) copyDir(e *entry, rel, dst string) syscall.Errno {
	u := c.u
	src, release, errno := e.top.confine(rel)
	if errno != 0 {
		return errno
	}
	defer release()
	if err := syscall.Mkdir(dst, 0700); err != nil {
		return errnoOf(err)
	}
	u.watchNewDir(dst)
	ents, errno := mergedListing(e.layers, rel)
	if errno != 0 {
		return errno
	}
	for _, d := range ents {
		ce, errno := lookupIn(e.layers, rel, d.name)
		if errno != 0 {
			continue
		}
		cdst := dst + "/" + d.name
		crel := joinRel(rel, d.name)
		made := true // a new file (not a new name of one) is at cdst
		if ce.isDir() {
			errno = c.copyDir(ce, crel, cdst)
		} else {
			made, errno = c.copyLinked(ce, crel, cdst)
		}
		if errno != 0 {
			return errno
		}
		var st syscall.Stat_t
		if syscall.Lstat(cdst, &st) == nil {
			u.numberAs(cdst, ce.st.key(), keyOf(&st), crel)
			if made {
				c.numbered = append(c.numbered, keyOf(&st))
			}
		}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(src, &st); err != nil {
		return errnoOf(err)
	}
	return errnoOf(copyMeta(src, dst, &st))
}

// copyLinked copies the non-directory ce (at crel) to cdst (see
// placeLower), and says whether the file at cdst is a new one. A file
// the rw branch holds (cdst is in it too) is not copied but hard-linked:
// it keeps its inode, so its names outside the moved directory stay
// links of it. The rename removes the old name after.
func (c *treeCopy) copyLinked(ce *entry, crel, cdst string) (made bool, errno syscall.Errno) {
	u := c.u
	if ce.top == u.rw {
		src, release, errno := u.rw.confine(crel)
		if errno != 0 {
			return false, errno
		}
		defer release()
		return false, errnoOf(syscall.Link(src, cdst))
	}
	placed, errno := u.placeLower(ce, crel, cdst, "", true)
	if errno != 0 {
		return false, errno
	}
	if placed.kind != placedAlone {
		c.placed = append(c.placed, placed)
	}
	return placed.kind != placedLinked, 0
}

// commit settles the link index once the copy is in place.
func (c *treeCopy) commit() {
	for _, p := range c.placed {
		c.u.links.settle(p)
	}
}

// abandon removes the copy and takes back what making it changed.
func (c *treeCopy) abandon() {
	u := c.u
	_ = removeTree(c.tmp)
	for _, k := range c.numbered {
		u.inos.unalias(k)
	}
	indexed := false
	for _, p := range c.placed {
		if p.kind == placedIndexed {
			u.links.remove(p.group.origin)
			indexed = true
		}
	}
	if indexed {
		u.gen.Add(1) // the groups' names resolve to their lower files again
	}
}
