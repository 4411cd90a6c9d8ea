package unionfs

import (
	"context"
	"errors"
	"os"
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

	stateMu sync.Mutex // guards branch.open counters
	root    *node
	server  *fuse.Server
	raw     *rawUnion // the bridge serving the union
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
	if b.mode == RW || u.names == nil {
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

// hiddenTempName is a name for a temporary entry of kind made beside
// the entry it will become: a whiteout name, so never listed, and
// removed with the whiteouts of its directory.
func (u *ufs) hiddenTempName(kind string) string {
	return workName + "." + kind + "." + strconv.FormatUint(u.tmpSeq.Add(1), 10)
}

func (u *ufs) tempName(kind string) string {
	u.ensureWorkDir()
	return u.workDir() + "/" + kind + "." + strconv.FormatUint(u.tmpSeq.Add(1), 10)
}

// ensureWorkDir creates the work directory on first need rather than at
// mount: creating a directory costs about a millisecond on some
// filesystems, more than the rest of a mount, and most mounts never copy
// anything up. A failure is left for the caller's create to report.
func (u *ufs) ensureWorkDir() {
	u.workMu.Lock()
	defer u.workMu.Unlock()
	if u.workReady {
		return
	}
	if err := os.Mkdir(u.workDir(), 0o700); err == nil || errors.Is(err, os.ErrExist) {
		u.workReady = true
	}
}

// newNode returns the node for stable number ino, reusing a live one.
func (u *ufs) newNode(ctx context.Context, parent *fs.Inode, ino uint64, e *entry) *fs.Inode {
	u.nodesMu.Lock()
	if n, ok := u.nodes[ino]; ok {
		u.nodesMu.Unlock()
		n.setEntry(e)
		return n.EmbeddedInode()
	}
	n := &node{u: u, ino: ino, kgen: u.kgens[ino]}
	n.e = e
	n.gen = u.gen.Load()
	u.nodes[ino] = n
	u.nodesMu.Unlock()
	mode := e.st.Mode & syscall.S_IFMT
	return parent.NewInode(ctx, n, fs.StableAttr{Mode: mode, Ino: ino, Gen: uint64(n.kgen)})
}

// retire makes the next lookup of n's inode number give the kernel a new
// node (a new generation, the same st_ino), so that later opens get a new
// kernel inode: the kernel keeps one passthrough backing file per inode,
// and n's is a lower file that was copied up since (see node.Open).
// Descriptors already open on n keep it.
func (u *ufs) retire(n *node) {
	u.nodesMu.Lock()
	defer u.nodesMu.Unlock()
	if u.nodes[n.ino] == n {
		delete(u.nodes, n.ino)
	}
	if u.kgens == nil {
		u.kgens = map[uint64]uint32{}
	}
	u.kgens[n.ino] = max(u.kgens[n.ino], n.kgen+1)
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

// branchOpen counts descriptors held in b, so DelBranch can refuse.
func (u *ufs) branchOpen(b *branch, delta int) {
	u.stateMu.Lock()
	b.open += delta
	u.stateMu.Unlock()
}
