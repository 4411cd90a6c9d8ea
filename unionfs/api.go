// Package unionfs is an aufs-compatible union filesystem in userspace, on
// FUSE (go-fuse/v2): a stack of branch directories, the leftmost on top,
// with copy-up to the writable branch, aufs whiteouts (.wh.NAME), opaque
// directories (.wh..wh..opq) and merged directory listings. It knows
// nothing of layers or Docker.
//
// The rw branch also holds the union's own entries, named .wh..wh.* and
// never listed: the work directory .wh..wh.orph (temporary copies and the
// file whiteouts are links of; emptied at mount) and the link index
// .wh..wh.plnk (the copies of lower hard-link groups, with their counts).
// Every change reaches the branch so that a failure (a full branch) or a
// crash leaves each name as it was or as it was meant to be: copies, and
// directories moved or removed, go through the work directory and reach
// or leave their names in one rename (treeCopy, removeAside); a whiteout
// goes in before the rw entry it uncovers goes, or for a rename is made
// aside first (pendingWhiteout); a link-index entry counts for its group
// only once its copy is in place (linkIndex.settle).
package unionfs

import "time"

// Mode is how a branch takes part in the union.
type Mode int

// The branch modes of aufs.
const (
	// RW is the writable branch: new files, copy-ups and whiteouts go here.
	RW Mode = iota
	// RO is read-only; whiteouts in it hide what lies below.
	RO
	// RR is "real read-only": never written, and no whiteouts are looked
	// for in it (it is known to hold none).
	RR
)

// Branch is one directory of the stack.
type Branch struct {
	Path string // absolute path of the branch directory
	Mode Mode
}

// Options tune a mount.
type Options struct {
	// EntryTimeout, AttrTimeout and NegativeTimeout are the kernel's
	// cache lifetimes for names, attributes and missing names. A lower
	// branch changed from outside shows through after them (aufs udba).
	EntryTimeout, AttrTimeout, NegativeTimeout time.Duration
	// Notify watches the branches (fanotify; kernel 5.9+ and
	// CAP_SYS_ADMIN, else Mount fails unless RevalFallback) and drops
	// what the daemon and the kernel cached of a name changed in one
	// from outside, so the change shows at once while the timeouts may
	// be long (aufs udba=notify). Files of the rw branch keep attributes
	// for no more than 1 s: a write to one from outside shows after that
	// (see branchWatcher). A branch added live that cannot be watched is
	// refused.
	Notify bool
	// RevalFallback, with Notify, mounts a union whose branches cannot
	// be watched (no CAP_SYS_ADMIN, fanotify's limit of groups per user
	// reached, a branch file system fanotify cannot name files of or
	// whose files change without local events (NFS, FUSE, ...), a
	// branch with another mount inside it) with udba=reval instead of
	// failing: Notify goes off and the
	// timeouts of a day (udba=notify's) become its 1 s; the reason is
	// logged. The default udba sets it; an explicit udba=notify does not.
	RevalFallback bool
	// Passthrough lets the kernel read and write opened files directly
	// (FUSE passthrough, kernel 6.9+), decided per handle: never for a
	// handle whose file could still be copied up, unless
	// PassthroughLower says otherwise.
	Passthrough bool
	// PassthroughLower also passes through files of read-only branches
	// opened read-only (passthrough=all). The price: a descriptor opened
	// before a copy-up keeps reading the lower file, weaker than kernel
	// overlayfs, whose read(2) follows the copy-up since 4.19 (only a
	// shared mmap made before it keeps the lower data there). Without it
	// such descriptors see the data written after the copy-up. The lower backing file is opened read-only, so no
	// write can reach a read-only branch through it. A union without an
	// rw branch, which never copies up, passes lower files through
	// whenever Passthrough is set.
	PassthroughLower bool
	// StatfsSum makes statfs report the space and inodes of every
	// branch's file system added up, each file system once (aufs's sum);
	// without it statfs reports the rw branch's (the top branch's in a
	// union without one).
	StatfsSum bool
	// FSName is the source shown in /proc/mounts ("unionctl" by default).
	FSName string
	// AllowOther lets users other than the mounter in (default on as root).
	AllowOther bool
	// Debug logs every FUSE request.
	Debug bool
}
