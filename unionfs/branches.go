package unionfs

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

// AddBranch inserts a read-only (RO or RR) branch at index of the live
// stack (0 is the top), below the rw branch, as aufs's remount add:
// does. The kernel's caches are dropped so the new stack shows.
func (s *Server) AddBranch(b Branch, index int) error {
	u := s.u
	if b.Mode == RW {
		return fmt.Errorf("add branch %s: only ro or rr branches can be added", b.Path)
	}
	path := filepath.Clean(b.Path)
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fmt.Errorf("add branch %s: %w", b.Path, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return fmt.Errorf("add branch %s: not a directory", b.Path)
	}
	u.lockNS()
	if index < 0 || index > len(u.branches) || (u.rw != nil && index == 0) {
		u.ns.Unlock()
		return fmt.Errorf("add branch %s: index %d out of range (1..%d)", b.Path, index, len(u.branches))
	}
	for _, x := range u.branches {
		if x.path == path {
			u.ns.Unlock()
			return fmt.Errorf("add branch %s: already in the stack", b.Path)
		}
	}
	nb := newBranch(path, b.Mode, uint64(st.Dev))
	if err := u.openBranchRoot(nb); err != nil {
		u.ns.Unlock()
		return fmt.Errorf("add branch %s: %w", b.Path, err)
	}
	nb.cache = u.branchCache(nb)
	nb.links = u.links
	brs := append([]*branch(nil), u.branches[:index]...)
	brs = append(brs, nb)
	brs = append(brs, u.branches[index:]...)
	u.branches = brs
	u.forgetResolutionsLocked()
	u.ns.Unlock()
	if u.watcher != nil {
		if err := u.watcher.addBranch(nb); err != nil {
			u.watcher.report(err)
		}
	}
	u.notifyIncEpoch()
	u.invalidateBranch(nb)
	return nil
}

// DelBranch removes the branch at path from the live stack. The rw
// branch, the last branch and a branch with open files are refused.
func (s *Server) DelBranch(path string) error {
	u := s.u
	path = filepath.Clean(path)
	u.lockNS()
	idx := -1
	for i, x := range u.branches {
		if x.path == path {
			idx = i
		}
	}
	if idx < 0 {
		u.ns.Unlock()
		return fmt.Errorf("del branch %s: not in the stack", path)
	}
	b := u.branches[idx]
	if b == u.rw {
		u.ns.Unlock()
		return fmt.Errorf("del branch %s: it is the rw branch", path)
	}
	if len(u.branches) == 1 {
		u.ns.Unlock()
		return fmt.Errorf("del branch %s: it is the only branch", path)
	}
	u.stateMu.Lock()
	open := b.open
	u.stateMu.Unlock()
	if open > 0 {
		u.ns.Unlock()
		return fmt.Errorf("del branch %s: %d open files: %w", path, open, syscall.EBUSY)
	}
	brs := append([]*branch(nil), u.branches[:idx]...)
	u.branches = append(brs, u.branches[idx+1:]...)
	u.forgetResolutionsLocked()
	u.ns.Unlock()
	if u.watcher != nil {
		u.watcher.unwatch(b)
	}
	u.notifyIncEpoch()
	u.invalidateBranch(b)
	return nil
}

// ModBranch changes the read-only branch at path between ro and rr on
// the live stack, as aufs's remount mod: did: whether its whiteouts and
// opaque markers count. The rw branch stays rw and no branch becomes rw
// while mounted. The kernel's caches are dropped so the change shows.
func (s *Server) ModBranch(path string, mode Mode) error {
	u := s.u
	path = filepath.Clean(path)
	if mode != RO && mode != RR {
		return specBadf("mod branch %s: only ro or rr can be set on a live mount", path)
	}
	u.lockNS()
	var b *branch
	for _, x := range u.branches {
		if x.path == path {
			b = x
		}
	}
	switch {
	case b == nil:
		u.ns.Unlock()
		return specBadf("mod branch %s: not in the stack", path)
	case b.isRW():
		u.ns.Unlock()
		return specBadf("mod branch %s: it is the rw branch, which stays rw while mounted", path)
	case b.modeNow() == mode:
		u.ns.Unlock()
		return nil
	}
	b.mode.Store(int32(mode))
	u.forgetResolutionsLocked()
	u.ns.Unlock()
	u.notifyIncEpoch()
	u.invalidateBranch(b)
	return nil
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
