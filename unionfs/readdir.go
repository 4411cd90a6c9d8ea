package unionfs

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

var _ fs.NodeReaddirer = (*node)(nil)

// dirent is one name of a merged listing.
type dirent struct {
	name string
	ino  uint64
	typ  uint8
	br   *branch
}

// direntBufs holds getdents buffers for readBranchDir, which lists the
// directories of hundreds of branches when a deep stack's cache fills.
var direntBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readBranchDir lists directory p of a branch (without . and ..).
func readBranchDir(p string) ([]dirent, error) {
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	return readDirFd(fd)
}

// readDirFd lists the directory open as fd (without . and ..).
func readDirFd(fd int) ([]dirent, error) {
	var out []dirent
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	buf := *bp
	for {
		n, err := syscall.ReadDirent(fd, buf)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		b := buf[:n]
		for len(b) > 0 {
			d := (*syscall.Dirent)(unsafe.Pointer(&b[0]))
			rec := int(d.Reclen)
			nameb := b[19:rec]
			l := 0
			for l < len(nameb) && nameb[l] != 0 {
				l++
			}
			name := string(nameb[:l])
			b = b[rec:]
			if name == "." || name == ".." {
				continue
			}
			out = append(out, dirent{name: name, ino: d.Ino, typ: d.Type})
		}
	}
}

// mergedListing lists directory rel merged from layers (top first): the
// top-most of each name wins, whiteouts hide names of the branches below
// them and are never listed, nor is any .wh.* name.
func mergedListing(layers []*branch, rel string) ([]dirent, syscall.Errno) {
	seen := map[string]bool{}
	hidden := map[string]bool{}
	var out []dirent
	now := time.Now()
	for _, b := range layers {
		ents, err := branchEntries(b, rel, now)
		if err != nil {
			if err == syscall.ENOENT || err == syscall.ENOTDIR {
				continue
			}
			return nil, errnoOf(err)
		}
		var wh []string
		for _, d := range ents {
			if isWhiteoutName(d.name) {
				if b.searchesWhiteouts() {
					wh = append(wh, d.name[len(whPrefix):])
				}
				continue
			}
			if seen[d.name] || hidden[d.name] {
				continue
			}
			seen[d.name] = true
			d.br = b
			out = append(out, d)
		}
		for _, w := range wh {
			hidden[w] = true
		}
	}
	return out, 0
}

// branchEntries lists directory rel of branch b, from its name cache
// when it has one. The result must not be changed.
func branchEntries(b *branch, rel string, now time.Time) ([]dirent, error) {
	if b.cache == nil {
		return b.readDir(rel)
	}
	d, err := b.cache.listing(b, rel, now)
	if err != nil {
		return nil, err
	}
	if d.missing {
		return nil, syscall.ENOENT
	}
	return d.ents, nil
}

// mergedNames lists the visible names of directory rel.
func mergedNames(layers []*branch, rel string) ([]string, syscall.Errno) {
	ents, errno := mergedListing(layers, rel)
	if errno != 0 {
		return nil, errno
	}
	names := make([]string, len(ents))
	for i, d := range ents {
		names[i] = d.name
	}
	return names, 0
}

// Readdir lists n, "." and ".." first. The directory handles of the
// mount serve snapshots instead (see OpendirHandle); this is the plain
// listing for callers without one.
func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ents, errno := n.mergedEntries()
	if errno != 0 {
		return nil, errno
	}
	list := make([]fuse.DirEntry, 0, len(ents)+2)
	list = append(list, n.dotEntries()...)
	return fs.NewListDirStream(append(list, ents...)), 0
}

// dotEntries are the "." and ".." entries of directory n.
func (n *node) dotEntries() []fuse.DirEntry {
	return []fuse.DirEntry{
		{Name: ".", Mode: syscall.S_IFDIR, Ino: n.ino, Off: 1},
		{Name: "..", Mode: syscall.S_IFDIR, Ino: 1, Off: 2},
	}
}

// mergedEntries is the merged listing of n as the kernel is given it,
// without "." and ".." and without offsets.
func (n *node) mergedEntries() ([]fuse.DirEntry, syscall.Errno) {
	list, _, errno := n.mergedEntriesListed()
	return list, errno
}

// mergedEntriesListed is mergedEntries, with where the listing found its
// non-directories.
func (n *node) mergedEntriesListed() ([]fuse.DirEntry, *listedTops, syscall.Errno) {
	n.u.ns.RLock()
	e, rel, errno := n.resolve()
	if errno != 0 {
		n.u.ns.RUnlock()
		return nil, nil, errno
	}
	seq := n.u.nsSeq.Load()
	ents, errno := mergedListing(e.layers, rel)
	if errno != 0 {
		n.u.ns.RUnlock()
		return nil, nil, errno
	}
	defer n.u.ns.RUnlock()
	lt := &listedTops{rel: rel, seq: seq, taken: time.Now(), tops: make(map[string]dirent, len(ents))}
	list := make([]fuse.DirEntry, 0, len(ents))
	for _, d := range ents {
		var ino uint64
		if d.br == n.u.rw {
			ino = n.u.upperIno(devIno{d.br.dev, d.ino}, e.layers, rel, d.name)
		} else {
			ino = n.u.inos.get(devIno{d.br.dev, d.ino})
		}
		list = append(list, fuse.DirEntry{Name: d.name, Ino: ino, Mode: uint32(d.typ) << 12})
		if d.typ != 0 && uint32(d.typ)<<12 != syscall.S_IFDIR {
			lt.tops[d.name] = d
		}
	}
	return list, lt, 0
}

// listedTops records, for the non-directories of a merged listing,
// the branch each was found in. READDIRPLUS then gets a listed file's
// attributes with one lstat where a lookup would search the stack
// again (an lstat and a whiteout check per branch above it): a walk
// that lists and stats a tree does a third of the system calls.
//
// The record holds while the namespace did not change through the
// union since the listing (nsSeq) and for no longer than the cache
// timeouts allow a branch changed from outside to go unseen.
type listedTops struct {
	rel   string    // the directory's path in the branches
	seq   uint64    // ufs.nsSeq when listed
	taken time.Time // when listed
	tops  map[string]dirent
	ahead atomic.Pointer[statAhead] // stats of its lower files taken ahead
}

// maxListedAge bounds the age of a listedTops that lookups trust.
const maxListedAge = time.Second

// lookupListed looks up name, a non-directory of the listing lt of
// directory n, in the branch the listing found it in; dirFd, when not
// -1, is an open descriptor of n in branch dirBr, which saves the lstat
// a walk of the whole path. It reports false when lt cannot answer: the
// name was not a listed non-directory, the record is too old or the
// namespace changed since, or the branch no longer has that file there.
func (n *node) lookupListed(ctx context.Context, lt *listedTops, name string, out *fuse.EntryOut, dirFd int, dirBr *branch) (*fs.Inode, bool) {
	d, ok := lt.tops[name]
	if !ok || time.Since(lt.taken) >= min(n.u.opts.EntryTimeout, maxListedAge) {
		return nil, false
	}
	u := n.u
	u.ns.RLock()
	defer u.ns.RUnlock()
	if u.nsSeq.Load() != lt.seq {
		return nil, false
	}
	var st syscall.Stat_t
	var err error
	if lt.ahead.Load().take(name, &st) {
		// Taken after the listing, with nothing changed since (nsSeq).
	} else if dirFd >= 0 && dirBr == d.br {
		// x/sys/unix's Stat_t is the kernel's struct stat, as syscall's is.
		err = unix.Fstatat(dirFd, name, (*unix.Stat_t)(unsafe.Pointer(&st)), unix.AT_SYMLINK_NOFOLLOW)
	} else {
		err = d.br.lstat(joinRel(lt.rel, name), &st)
	}
	if err != nil {
		return nil, false
	}
	if st.Ino != d.ino || st.Mode&syscall.S_IFMT != uint32(d.typ)<<12 {
		return nil, false
	}
	e := newEntry(d.br, &st)
	d.br.links.resolve(e, &st) // a copied-up hard-link group shows its copy
	var layers []*branch
	if d.br == u.rw {
		pe, _, errno := n.resolve()
		if errno != 0 {
			return nil, false
		}
		layers = pe.layers
	}
	return u.childNode(ctx, n, layers, lt.rel, name, e, &st, out), true
}
