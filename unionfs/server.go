package unionfs

import (
	"errors"
	"fmt"
	"log"
	"os"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Default cache lifetimes, used where Options leaves them zero.
const (
	DefaultEntryTimeout    = time.Second
	DefaultAttrTimeout     = time.Second
	DefaultNegativeTimeout = time.Second
)

// Server is a mounted union being served.
type Server struct {
	u          *ufs
	fuse       *fuse.Server
	mountpoint string
	own        bool // mounted by mountOwn, unmounted by unmountOwn
}

// openBranches checks that every branch is a directory and records its
// device. (Validate, which mounts run first, opened each one, which also
// catches a dead FUSE mount that stat answers from its cache.)
func openBranches(branches []Branch) ([]*branch, *branch, error) {
	if len(branches) == 0 {
		return nil, nil, errors.New("no branches")
	}
	var out []*branch
	var rw *branch
	for i, b := range branches {
		var st syscall.Stat_t
		if err := syscall.Stat(b.Path, &st); err != nil {
			return nil, nil, fmt.Errorf("branch %s: %w", b.Path, err)
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return nil, nil, fmt.Errorf("branch %s: not a directory", b.Path)
		}
		br := newBranch(b.Path, b.Mode, uint64(st.Dev))
		if b.Mode == RW {
			if rw != nil {
				return nil, nil, fmt.Errorf("branch %s: a second rw branch", b.Path)
			}
			if i != 0 {
				return nil, nil, fmt.Errorf("branch %s: the rw branch must be on top", b.Path)
			}
			rw = br
		}
		out = append(out, br)
	}
	return out, rw, nil
}

// inoMapFor numbers the files of branches brs by their own inode
// numbers when all are on one file system (see inoMap).
func inoMapFor(brs []*branch) *inoMap {
	for _, b := range brs[1:] {
		if b.dev != brs[0].dev {
			return newInoMap()
		}
	}
	return newRealInoMap(brs[0].dev)
}

// withDefaults fills unset options. A zero timeout means the default; a
// negative one turns that cache off.
func withDefaults(o Options) Options {
	if o.EntryTimeout == 0 {
		o.EntryTimeout = DefaultEntryTimeout
	}
	if o.AttrTimeout == 0 {
		o.AttrTimeout = DefaultAttrTimeout
	}
	if o.NegativeTimeout == 0 {
		o.NegativeTimeout = DefaultNegativeTimeout
	}
	for _, d := range []*time.Duration{&o.EntryTimeout, &o.AttrTimeout, &o.NegativeTimeout} {
		if *d < 0 {
			*d = 0
		}
	}
	if o.FSName == "" {
		o.FSName = "unionctl"
	}
	return o
}

// Mount mounts the union of branches (top first) on mountpoint and
// returns once the mount is ready. Branches are expected validated
// (see the spec parser); a branch that cannot be opened fails the call
// and nothing is mounted. Serving a union sets the process's umask to 0:
// files made through the union get the mode their maker asked for, less
// the maker's umask only.
func Mount(branches []Branch, mountpoint string, opts Options) (*Server, error) {
	u, root, fsopts, err := newUnion(branches, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	dir, own := mountpoint, canMountOwn()
	if own {
		// The union mounts /dev/fuse itself and keeps the descriptor
		// (see fusefd.go); go-fuse serves it as mounted.
		fd, err := mountOwn(mountpoint, fsopts.MountOptions)
		if err != nil {
			if u.watcher != nil {
				u.watcher.close()
			}
			u.closeBranchRoots()
			return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
		}
		dir = fmt.Sprintf("/dev/fd/%d", fd)
		fsopts.MountOptions.DirectMount = false
		fsopts.MountOptions.DirectMountStrict = false
	}
	srv, err := serveUnion(u, root, dir, fsopts)
	if err == nil && own {
		// go-fuse makes its own mounts refuse poll; this one is ours.
		servePollHack(mountpoint)
	}
	if err != nil {
		if own {
			_ = unix.Unmount(mountpoint, unix.MNT_DETACH)
		}
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	u.server = srv
	tuneReadAhead(mountpoint)
	return &Server{u: u, fuse: srv, mountpoint: mountpoint, own: own}, nil
}

// newUnion opens the branches and builds the union's root node and the
// go-fuse options it is to be mounted with; nothing is mounted yet.
func newUnion(branches []Branch, opts Options) (_ *ufs, _ *node, _ *fs.Options, err error) {
	opts = withDefaults(opts)
	brs, rw, err := openBranches(branches)
	if err != nil {
		return nil, nil, nil, err
	}
	u := &ufs{opts: opts, branches: brs, rw: rw, inos: inoMapFor(brs), nodes: map[uint64]*node{}, nameMax: 251, workFd: -1, connFd: -1}
	defer func() {
		if err != nil {
			u.closeBranchRoots()
		}
	}()
	// A union without an rw branch never copies up (none can be added
	// later), so passing its lower files through costs nothing.
	u.ptLower = opts.Passthrough && (opts.PassthroughLower || rw == nil)
	u.useNameCache()
	for _, b := range brs {
		if err := u.openBranchRoot(b); err != nil {
			return nil, nil, nil, fmt.Errorf("branch %s: %w", b.path, err)
		}
	}
	top := brs[0]
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(top.path, &sfs); err == nil && sfs.Namelen > 4 {
		u.nameMax = int(sfs.Namelen) - len(whPrefix)
	}
	if rw != nil {
		if err := cleanWorkDir(u.workDir()); err != nil {
			return nil, nil, nil, fmt.Errorf("work dir: %w", err)
		}
		if u.links, err = openLinkIndex(rw, u.keepFd); err != nil {
			return nil, nil, nil, err
		}
		for _, b := range brs {
			if b != rw {
				b.links = u.links
			}
		}
	}
	root := &node{u: u, ino: 1}
	u.root = root
	root.e = u.rootEntry()
	u.inos.setAlias(root.e.st.key(), 1)

	if opts.Notify {
		if u.watcher, err = newBranchWatcher(u); err != nil {
			if !opts.RevalFallback {
				return nil, nil, nil, fmt.Errorf("udba=notify: %w", err)
			}
			u.fallback = err.Error()
			log.Printf("udba=notify: %v; using udba=reval (outside changes to the branches show within %v)", err, udbaRevalTimeout)
			u.fallBackToReval()
		}
	}
	fsopts := fuseOptions(u.opts)
	return u, root, fsopts, nil
}

// useNameCache gives the union a name cache for the lower branches when
// its timeouts are long enough to be worth one (minNameCacheTTL), or
// none, and each branch the one it uses (see branchCache).
func (u *ufs) useNameCache() {
	u.names = nil
	if ttl := min(u.opts.EntryTimeout, u.opts.NegativeTimeout); ttl >= minNameCacheTTL {
		u.names = newNameCache(ttl)
	}
	for _, b := range u.branches {
		b.cache = u.branchCache(b)
	}
}

// fallBackToReval turns udba=notify, whose watcher could not be made,
// into udba=reval before the union is served (Options.RevalFallback):
// the timeouts of a day become 1 s, and the name cache follows them.
func (u *ufs) fallBackToReval() {
	u.opts.Notify = false
	for _, d := range []*time.Duration{&u.opts.EntryTimeout, &u.opts.AttrTimeout, &u.opts.NegativeTimeout} {
		if *d == udbaNoneTimeout {
			*d = udbaRevalTimeout
		}
	}
	u.useNameCache()
}

// fuseOptions are the go-fuse options a union with opts (defaults
// filled) is mounted and served with. A client that mounts /dev/fuse
// for a mount server derives its mount(2) arguments from them too
// (kernelMountArgs).
func fuseOptions(opts Options) *fs.Options {
	entry, attr, neg := opts.EntryTimeout, opts.AttrTimeout, opts.NegativeTimeout
	mopts := fuse.MountOptions{
		AllowOther:   opts.AllowOther || os.Geteuid() == 0,
		FsName:       opts.FSName,
		Name:         "unionctl",
		Debug:        opts.Debug,
		DirectMount:  true,
		MaxWrite:     512 << 10,
		MaxReadAhead: 512 << 10,
		Options:      []string{"default_permissions"},
		// Neither nosuid nor nodev, which go-fuse sets by default: a
		// union mounted by root honours set-user-ID bits, file
		// capabilities and device nodes as any root mount does, unless
		// the spec asks (MountSpec.NoSuid, NoDev). MS_MGC_VAL is "no
		// flags" to mount(2).
		DirectMountFlags: unix.MS_MGC_VAL,
		// The kernel checks POSIX ACLs too, as it does for the
		// branches themselves, and caches them per inode: an ACL is
		// read once (GETXATTR) rather than with every ls -l.
		EnableAcl: true,
		// Setting an ACL can ask the daemon to clear set-group-ID
		// (rawUnion.SetXAttr).
		ExtraCapabilities: fuse.CAP_SETXATTR_EXT,
		// READDIRPLUS stays on: it answers a listing with the entries'
		// attributes, so a walk that stats what it lists needs no LOOKUP
		// per name (see dirHandle.Lookup).
	}
	return &fs.Options{
		MountOptions:    mopts,
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &neg,
		RootStableAttr:  &fs.StableAttr{Ino: 1},
		// Report modes as the branches hold them: go-fuse would show a
		// file of mode 0000 as 0644.
		NullPermissions: true,
	}
}

// Wait blocks until the file system is unmounted.
func (s *Server) Wait() { s.fuse.Wait() }

// Unmount unmounts the union and waits for the serving to end.
func (s *Server) Unmount() error {
	if s.own {
		if err := unmountOwn(s.mountpoint); err != nil {
			return fmt.Errorf("unmount %s: %w", s.mountpoint, err)
		}
		s.fuse.Wait()
		return nil
	}
	if err := s.fuse.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w", s.mountpoint, err)
	}
	return nil
}

// Fallback says why the union, asked for udba=notify by default, runs
// with udba=reval (see Options.RevalFallback), or "" when it does not.
func (s *Server) Fallback() string { return s.u.fallback }

// Mountpoint is where the union is mounted.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Branches lists the branches of the live stack, top first.
func (s *Server) Branches() []Branch {
	s.u.ns.RLock()
	defer s.u.ns.RUnlock()
	out := make([]Branch, len(s.u.branches))
	for i, b := range s.u.branches {
		out[i] = Branch{Path: b.path, Mode: b.modeNow()}
	}
	return out
}
