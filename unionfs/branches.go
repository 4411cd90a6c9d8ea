package unionfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

// BranchEdit is one change to a live branch stack, as one of aufs's
// remount add:, del: and mod: options made.
type BranchEdit struct {
	// Op is EditAdd, EditDel or EditMod.
	Op EditOp
	// Branch is the branch to add (RO or RR), or names by Path the
	// branch to delete or change, and for EditMod its new Mode.
	Branch Branch
	// Index is where EditAdd inserts the branch: 0 is the top (taken
	// by the rw branch, if any), -1 the bottom.
	Index int
}

// EditOp is what a BranchEdit does.
type EditOp string

// The branch edits.
const (
	EditAdd EditOp = "add" // insert a read-only branch
	EditDel EditOp = "del" // remove a branch
	EditMod EditOp = "mod" // switch a read-only branch between ro and rr
)

// AddBranch inserts a read-only (RO or RR) branch at index of the live
// stack (0 is the top), below the rw branch, as aufs's remount add:
// does. The kernel's caches are dropped so the new stack shows.
func (s *Server) AddBranch(b Branch, index int) error {
	return s.EditBranches([]BranchEdit{{Op: EditAdd, Branch: b, Index: index}})
}

// DelBranch removes the branch at path from the live stack. The rw
// branch, the last branch and a branch with open files are refused.
func (s *Server) DelBranch(path string) error {
	return s.EditBranches([]BranchEdit{{Op: EditDel, Branch: Branch{Path: path}}})
}

// ModBranch changes the read-only branch at path between ro and rr on
// the live stack, as aufs's remount mod: did: whether its whiteouts and
// opaque markers count. The rw branch stays rw and no branch becomes rw
// while mounted. The kernel's caches are dropped so the change shows.
func (s *Server) ModBranch(path string, mode Mode) error {
	return s.EditBranches([]BranchEdit{{Op: EditMod, Branch: Branch{Path: path, Mode: mode}}})
}

// EditBranches makes edits to the live stack, in order, all or none: each
// is checked against the stack the ones before it leave (see AddBranch,
// DelBranch, ModBranch), and the first that fails leaves the stack as it
// was and is reported. Then the kernel's caches are dropped once, so the
// new stack shows, and no lookup sees a stack with only some of them.
func (s *Server) EditBranches(edits []BranchEdit) error {
	u := s.u
	added, err := u.openAddedBranches(edits)
	if err != nil {
		return err
	}
	drop := func() {
		for _, nb := range added {
			if u.watcher != nil {
				u.watcher.unwatch(nb)
			}
			u.dropBranchRoot(nb)
		}
	}
	if err := u.watchAdded(added); err != nil {
		drop()
		return err
	}
	u.lockNS()
	next, modes, err := u.playEditsLocked(edits, added)
	if err != nil {
		u.ns.Unlock()
		drop()
		return err
	}
	old := u.branches
	if slices.Equal(old, next) && len(modes) == 0 {
		u.ns.Unlock()
		drop() // branches added and deleted again, if any
		return nil
	}
	u.branches = next
	for b, m := range modes {
		b.mode.Store(int32(m))
	}
	for _, nb := range added {
		nb.cache = u.branchCache(nb)
		nb.links = u.links
	}
	u.forgetResolutionsLocked()
	u.ns.Unlock()

	var changed []*branch
	for _, b := range old {
		if !slices.Contains(next, b) {
			if u.watcher != nil {
				u.watcher.unwatch(b)
			}
			changed = append(changed, b)
		}
	}
	for _, nb := range added {
		if slices.Contains(next, nb) {
			changed = append(changed, nb)
		} else {
			// Added and deleted by the same edits: nothing saw it.
			if u.watcher != nil {
				u.watcher.unwatch(nb)
			}
			u.dropBranchRoot(nb)
		}
	}
	for b := range modes {
		if slices.Contains(next, b) && !slices.Contains(changed, b) {
			changed = append(changed, b)
		}
	}
	u.notifyIncEpoch()
	for _, b := range changed {
		u.invalidateBranch(b)
	}
	return nil
}

// openAddedBranches opens the root of each branch edits add, keyed by
// the edit's index, before the namespace lock is taken. The roots of
// branches that join the stack are kept until unmount, as every
// branch's are; the caller drops them if the edits fail.
func (u *ufs) openAddedBranches(edits []BranchEdit) (map[int]*branch, error) {
	added := map[int]*branch{}
	for i, e := range edits {
		if e.Op != EditAdd {
			continue
		}
		nb, err := u.openAddedBranch(e.Branch)
		if err != nil {
			for _, ob := range added {
				u.dropBranchRoot(ob)
			}
			return nil, fmt.Errorf("add branch %s: %w", e.Branch.Path, err)
		}
		added[i] = nb
	}
	return added, nil
}

// watchAdded has the branch watcher (udba=notify) watch the branches
// edits add, before they join the stack: one it cannot watch (a file
// system fanotify cannot name files of, the mark limit) is refused, as
// changes made to it from outside would never show.
func (u *ufs) watchAdded(added map[int]*branch) error {
	if u.watcher == nil {
		return nil
	}
	var brs []*branch
	for _, nb := range added {
		brs = append(brs, nb)
	}
	if err := checkWatchable(brs); err != nil {
		return fmt.Errorf("add branch: %w (udba=notify cannot watch it, so changes made to it from outside would not show; mount with udba=reval to use it)", err)
	}
	for _, nb := range added {
		if err := u.watcher.addBranch(nb); err != nil {
			return fmt.Errorf("add branch %s: %w (udba=notify cannot watch it, so changes made to it from outside would not show; mount with udba=reval to use it)", nb.path, err)
		}
	}
	return nil
}

// openAddedBranch checks b, a branch to add, and opens its root.
func (u *ufs) openAddedBranch(b Branch) (*branch, error) {
	if b.Mode != RO && b.Mode != RR {
		return nil, errors.New("only ro or rr branches can be added")
	}
	path := filepath.Clean(b.Path)
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nil, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return nil, errors.New("not a directory")
	}
	nb := newBranch(path, b.Mode, uint64(st.Dev))
	if err := u.openBranchRoot(nb); err != nil {
		return nil, err
	}
	return nb, nil
}

// playEditsLocked plays edits on a copy of the stack and returns it with
// the mode changes to make, or the first edit's error; added holds the
// branches the add edits insert (openAddedBranches). u.ns is held.
func (u *ufs) playEditsLocked(edits []BranchEdit, added map[int]*branch) ([]*branch, map[*branch]Mode, error) {
	next := slices.Clone(u.branches)
	modes := map[*branch]Mode{}
	find := func(path string) int {
		path = filepath.Clean(path)
		return slices.IndexFunc(next, func(b *branch) bool { return b.path == path })
	}
	for i, e := range edits {
		path := e.Branch.Path
		switch e.Op {
		case EditAdd:
			index := e.Index
			if index < 0 {
				index = len(next)
			}
			if index > len(next) || (u.rw != nil && index == 0) {
				return nil, nil, fmt.Errorf("add branch %s: index %d out of range (1..%d)", path, e.Index, len(next))
			}
			if find(path) >= 0 {
				return nil, nil, fmt.Errorf("add branch %s: already in the stack", path)
			}
			next = slices.Insert(next, index, added[i])
		case EditDel:
			idx := find(path)
			if idx < 0 {
				return nil, nil, fmt.Errorf("del branch %s: not in the stack", path)
			}
			b := next[idx]
			if b == u.rw {
				return nil, nil, fmt.Errorf("del branch %s: it is the rw branch", path)
			}
			if len(next) == 1 {
				return nil, nil, fmt.Errorf("del branch %s: it is the only branch", path)
			}
			u.stateMu.Lock()
			open := b.open
			u.stateMu.Unlock()
			if open > 0 {
				return nil, nil, fmt.Errorf("del branch %s: %d open files: %w", path, open, syscall.EBUSY)
			}
			next = slices.Delete(next, idx, idx+1)
		case EditMod:
			mode := e.Branch.Mode
			if mode != RO && mode != RR {
				return nil, nil, specBadf("mod branch %s: only ro or rr can be set on a live mount", path)
			}
			idx := find(path)
			switch {
			case idx < 0:
				return nil, nil, specBadf("mod branch %s: not in the stack", path)
			case next[idx].isRW():
				return nil, nil, specBadf("mod branch %s: it is the rw branch, which stays rw while mounted", path)
			}
			if b := next[idx]; b.modeNow() == mode {
				delete(modes, b)
			} else {
				modes[b] = mode
			}
		default:
			return nil, nil, specBadf("branch edit %q of %s: want add, del or mod", e.Op, path)
		}
	}
	return next, modes, nil
}

// notifyBranchNames drops the kernel's entries, negative ones too, of
// directory dir for every name directory rel of branch b holds: a
// whiteout stands for the name it hides; an opaque marker for none.
func notifyBranchNames(dir *fs.Inode, b *branch, rel string) {
	ents, _ := b.readDir(rel)
	for _, d := range ents {
		if d.name != opqMarker {
			_ = dir.NotifyEntry(strings.TrimPrefix(d.name, whPrefix))
		}
	}
}

// invalidateBranch drops the kernel's cached names, attributes and pages
// of every known node, and the (possibly negative) names that branch b
// (added, removed or changed) has in each known directory, so the
// changed stack shows at once. A lookup resolved before the change whose
// reply reaches the kernel after this leaves it an entry of the old
// stack, which only the epoch the caller moves first (notifyIncEpoch)
// makes stale; without it (not root, a kernel before 6.16) such an entry
// lasts until its timeout.
func (u *ufs) invalidateBranch(b *branch) {
	seen := map[*fs.Inode]bool{}
	var walk func(n *fs.Inode, rel string)
	walk = func(n *fs.Inode, rel string) {
		if seen[n] {
			return
		}
		seen[n] = true
		_ = n.NotifyContent(0, 0)
		if n.Mode()&syscall.S_IFMT == syscall.S_IFDIR {
			notifyBranchNames(n, b, rel)
		}
		for name, ch := range n.Children() {
			_ = n.NotifyEntry(name)
			walk(ch, joinRel(rel, name))
		}
	}
	walk(u.root.EmbeddedInode(), "")
}

// Revalidate forgets the cached names of the read-only branches, so a
// change made to them from outside shows in new lookups at once instead
// of after the entry timeout (names the kernel cached keep theirs). A
// union whose directories are opened without a request also makes the
// kernel drop the listings it holds, which no opendir would check.
func (s *Server) Revalidate() {
	if s.u.names != nil {
		s.u.names.reset()
	}
	if s.u.zeroOpendir() {
		s.u.dropKernelListings()
	}
}
