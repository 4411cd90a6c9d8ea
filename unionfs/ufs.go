package unionfs

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// ufs is the state of one mounted union.
type ufs struct {
	opts Options
	// fallback says why the union asked for udba=notify but runs with
	// udba=reval (Options.RevalFallback); "" when it does not.
	fallback string

	// ns orders changes of the namespace (anything that creates,
	// removes or renames names in a branch, and branch changes) against
	// lookups and listings, which take it shared.
	ns       sync.RWMutex
	nsSeq    atomic.Uint64 // counts the times ns was taken for a change (see lockNS)
	branches []*branch     // top first; guarded by ns
	rw       *branch       // the writable branch, nil for a read-only union
	links    *linkIndex    // copied-up lower hard-link groups; nil without rw

	gen       atomic.Uint64 // bumped when cached resolutions become invalid
	inos      *inoMap
	names     *nameCache // names of the read-only branches; nil when off
	nameMax   int        // longest name accepted (branch limit minus len(".wh."))
	tmpSeq    atomic.Uint64
	workMu    sync.Mutex
	workReady bool // the work directory exists (see ensureWorkDir)
	workFd    int  // the work directory, opened by ensureWorkDir (-1 before)
	// whBaseReady says the base file of whiteouts exists (see
	// whiteoutBase); guarded by workMu.
	whBaseReady bool

	// watcher watches the branches (udba=notify), else nil.
	watcher *branchWatcher

	// ptLower passes read-only opens of lower files through (see
	// Options.PassthroughLower).
	ptLower bool

	nodesMu sync.Mutex
	nodes   map[uint64]*node // live nodes by stable inode number
	// kgens holds, for an inode number whose node was retired, the
	// generation its next node gets (see retire).
	kgens map[uint64]uint32

	// rootsMu guards rootFds, the branch roots opened for confined
	// paths (see confine), closed once the serving ends; a branch
	// deleted from the stack keeps its own open until then.
	rootsMu sync.Mutex
	rootFds []int

	stateMu sync.Mutex // guards branch.open counters
	root    *node
	server  *fuse.Server
	// connMu guards connFd, a duplicate of the union's /dev/fuse
	// descriptor for notifications go-fuse cannot send; -1 when there is
	// none (see fusefd.go).
	connMu sync.Mutex
	connFd int
	raw    *rawUnion // the bridge serving the union
}

// lockNS takes ns for a change of the namespace. nsSeq moves with it,
// so a reader holding ns shared can tell whether anything changed since
// an earlier read section (see listedTops).
func (u *ufs) lockNS() {
	u.ns.Lock()
	u.nsSeq.Add(1)
}

// forgetResolutionsLocked makes every node resolve its place in the
// stack again and empties the name cache: the stack or a branch changed.
// The caller holds ns exclusively.
func (u *ufs) forgetResolutionsLocked() {
	u.gen.Add(1)
	if u.names != nil {
		u.names.reset()
	}
}

// branchCache is the name cache for b: none for the rw branch, which
// the union changes itself.
func (u *ufs) branchCache(b *branch) *nameCache {
	if b.isRW() || u.names == nil {
		return nil
	}
	return u.names
}

// longCacheMin is the entry timeout from which the kernel's caches of the
// union count as long-lived (udba=none gives a day): directory listings
// are then cached in the kernel too (see OpendirHandle). A variable for
// the tests of that cache, which use short timeouts.
var longCacheMin = 10 * time.Second

// longCache says whether the kernel keeps names for long (longCacheMin).
func (u *ufs) longCache() bool { return u.opts.EntryTimeout >= longCacheMin }

func (u *ufs) workDir() string { return u.rw.join(workName) }

// workPath names name in the work directory, through the descriptor
// ensureWorkDir opened it as (no path walked: see confine).
func (u *ufs) workPath(name string) string {
	u.ensureWorkDir()
	u.workMu.Lock()
	fd := u.workFd
	u.workMu.Unlock()
	if fd < 0 {
		return u.workDir() + "/" + name // its creation failed: so will the caller's
	}
	return procFdPath(fd, name)
}

// hiddenTempName is a name for a temporary entry of kind made beside
// the entry it will become: a whiteout name, so never listed, and
// removed with the whiteouts of its directory.
func (u *ufs) hiddenTempName(kind string) string {
	return workName + "." + kind + "." + strconv.FormatUint(u.tmpSeq.Add(1), 10)
}

// tempName is a new name in the work directory for a temporary entry of
// kind, or why the work directory cannot be made (ENOSPC on a full rw
// branch, rather than the ENOENT a create in it would then give).
func (u *ufs) tempName(kind string) (string, syscall.Errno) {
	if errno := u.ensureWorkDir(); errno != 0 {
		return "", errno
	}
	return u.workPath(kind + "." + strconv.FormatUint(u.tmpSeq.Add(1), 10)), 0
}

// ensureWorkDir creates the work directory on first need rather than at
// mount: creating a directory costs about a millisecond on some
// filesystems, more than the rest of a mount, and most mounts never copy
// anything up. It reports why it cannot.
func (u *ufs) ensureWorkDir() syscall.Errno {
	u.workMu.Lock()
	defer u.workMu.Unlock()
	if u.workReady {
		return 0
	}
	fd, errno := u.rw.openSubdir(workName)
	if errno != 0 {
		return errno
	}
	u.workReady, u.workFd = true, fd
	u.keepFd(fd)
	return 0
}

// newNode returns the node for stable number ino, reusing a live one
// of the same type (one of another type was a file removed since, whose
// number the branch's file system gave the new one: it is retired).
func (u *ufs) newNode(ctx context.Context, parent *fs.Inode, ino uint64, e *entry) *fs.Inode {
	u.nodesMu.Lock()
	if n, ok := u.nodes[ino]; ok {
		n.mu.Lock()
		same := n.e == nil || n.e.st.Mode&syscall.S_IFMT == e.st.Mode&syscall.S_IFMT
		n.mu.Unlock()
		if same {
			u.nodesMu.Unlock()
			n.setEntry(e)
			return n.EmbeddedInode()
		}
		u.retireLocked(n)
	}
	n := &node{u: u, ino: ino, kgen: u.kgens[ino]}
	n.e = e
	n.gen = u.gen.Load()
	// go-fuse's part of n is made before n is in u.nodes: a lookup of the
	// same number racing this one (a hard link in another directory, a
	// READDIRPLUS beside a LOOKUP) takes n from there and hands it to
	// go-fuse, which must find it made. (NewInode takes no lock of ours.)
	in := parent.NewInode(ctx, n, fs.StableAttr{Mode: e.st.Mode & syscall.S_IFMT, Ino: ino, Gen: uint64(n.kgen)})
	u.nodes[ino] = n
	u.nodesMu.Unlock()
	return in
}

// retire makes the next lookup of n's inode number give the kernel a new
// node (a new generation, the same st_ino), so that later opens get a new
// kernel inode: the kernel keeps one passthrough backing file per inode,
// and n's is a lower file that was copied up since (see node.Open).
// Descriptors already open on n keep it.
func (u *ufs) retire(n *node) {
	u.nodesMu.Lock()
	defer u.nodesMu.Unlock()
	u.retireLocked(n)
}

// retireLocked is retire with u.nodesMu held.
func (u *ufs) retireLocked(n *node) {
	if u.nodes[n.ino] == n {
		delete(u.nodes, n.ino)
	}
	if u.kgens == nil {
		u.kgens = map[uint64]uint32{}
	}
	u.kgens[n.ino] = max(u.kgens[n.ino], n.kgen+1)
}

// numberGone forgets k, a file removed through the union. With real
// numbers (see inoMap) a file the branch makes later may get k's inode
// number: the live node of the removed file, if the kernel still holds
// one, is retired so the new file gets a node of its own.
func (u *ufs) numberGone(k devIno) {
	v, ok := u.inos.lookup(k)
	if !ok {
		v, ok = u.inos.ownNumber(k)
	}
	u.inos.drop(k)
	if ok {
		u.retireNumber(v)
	}
}

// retireNumber retires the live node of number v, if there is one.
func (u *ufs) retireNumber(v uint64) {
	u.nodesMu.Lock()
	defer u.nodesMu.Unlock()
	if n := u.nodes[v]; n != nil {
		u.retireLocked(n)
	}
}

func (u *ufs) forget(n *node) {
	u.nodesMu.Lock()
	if u.nodes[n.ino] == n {
		delete(u.nodes, n.ino)
	}
	u.nodesMu.Unlock()
}

// checkName validates a name about to be created.
func (u *ufs) checkName(name string) syscall.Errno {
	if len(name) > u.nameMax {
		return syscall.ENAMETOOLONG
	}
	if isWhiteoutName(name) {
		return syscall.EPERM
	}
	if u.rw == nil {
		return syscall.EROFS
	}
	return 0
}

// openBranchRoot opens the root of b for confined paths.
func (u *ufs) openBranchRoot(b *branch) error {
	fd, err := openRoot(b.path)
	if err != nil {
		return err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(procFdPath(fd, "."), &st); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("reach it through /proc/self/fd (is /proc mounted?): %w", err)
	}
	b.rootFd = fd
	u.keepFd(fd)
	return nil
}

// keepFd registers fd, opened for confined paths, to be closed with
// the branch roots.
func (u *ufs) keepFd(fd int) {
	u.rootsMu.Lock()
	u.rootFds = append(u.rootFds, fd)
	u.rootsMu.Unlock()
}

// dropBranchRoot closes the root descriptor of b, a branch that never
// made it into the stack, and forgets it.
func (u *ufs) dropBranchRoot(b *branch) {
	u.rootsMu.Lock()
	defer u.rootsMu.Unlock()
	if i := slices.Index(u.rootFds, b.rootFd); i >= 0 {
		u.rootFds = slices.Delete(u.rootFds, i, i+1)
		syscall.Close(b.rootFd)
	}
	b.rootFd = -1
}

// closeBranchRoots closes the branch roots once nothing is served.
func (u *ufs) closeBranchRoots() {
	u.rootsMu.Lock()
	defer u.rootsMu.Unlock()
	for _, fd := range u.rootFds {
		syscall.Close(fd)
	}
	u.rootFds = nil
}

// branchOpen counts descriptors held in b, so DelBranch can refuse.
func (u *ufs) branchOpen(b *branch, delta int) {
	u.stateMu.Lock()
	b.open += delta
	u.stateMu.Unlock()
}
