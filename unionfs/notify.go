package unionfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/unionstack/unionstack/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// branchWatcher serves udba=notify, as aufs's fsnotify-based udba=notify
// does: the kernel may cache names, attributes and listings for long, and
// a change made from outside to a branch is reported by the kernel
// (fanotify, events naming the directory by file handle and the changed
// name) and drops what the daemon and the kernel cached of it.
//
// Every branch directory that a lookup passes through is marked (the
// roots at mount), and so is every directory the union creates in the rw
// branch (mkdir, copy-up, the copy a rename makes), which covers all the
// kernel can have cached: a name new in a branch appears in a directory
// of it that is marked, or in one created in a marked directory. Events
// name the directory by handle, which is resolved to its path when the
// event is read, so a directory renamed since it was marked is still
// found where it is now.
//
// In the rw branch the union's own changes are not news: events this
// process caused there are dropped, and content changes are not watched
// at all, since a write through a passthrough handle runs in the writer's
// context and cannot be told from one made from outside. Files of the rw
// branch therefore get the udba=reval attribute timeout, so an outside
// write to one shows within it (its pages are dropped when the mtime
// moves); everything else shows at once.
//
// The costs: a fanotify group per mount (fs.fanotify.max_user_groups, 128
// by default), a mark per directory looked up or created, which keeps that
// inode in memory until unmount (fs.fanotify.max_user_marks bounds them
// all), and an event read and dropped for each change the union makes to
// the rw branch's names.
type branchWatcher struct {
	u    *ufs
	fd   int   // the fanotify group (non-blocking)
	wake int   // an eventfd close signals, to end run's poll
	self int32 // this process: its events in the rw branch are dropped

	mu      sync.Mutex
	roots   map[*branch]branchRoot // watched branches
	dirs    map[string]watchedDir  // marked directories by fsid and file handle, where marked
	marked  map[dirKey]bool        // branch directories marked, by path
	closed  bool
	running bool // run owns fd and wake, and closes them
	warned  bool // a failed mark was logged

	// ownDirs are rw directories (by fsid and handle) this process
	// changed, so its next events there are dropped without looking
	// the directory up. Only run (parse) uses it.
	ownDirs map[string]bool

	applied atomic.Int64 // changes applied so far, for debugging and tests
}

// branchRoot is what resolving a handle of a watched branch needs: a
// descriptor of its root (the mount to open handles on) and its fsid.
type branchRoot struct {
	fd   int
	fsid string
}

// watchedDir is a marked directory: rel of branch b.
type watchedDir struct {
	b   *branch
	rel string
}

// watchMask is what a mark on a read-only branch reports: names created,
// removed and moved in the directory (subdirectories too), and the
// content and attributes of its entries and of itself.
const watchMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO |
	unix.FAN_ATTRIB | unix.FAN_MODIFY | unix.FAN_ONDIR | unix.FAN_EVENT_ON_CHILD

// rwWatchMask is watchMask without content changes, for the rw branch.
const rwWatchMask = watchMask &^ unix.FAN_MODIFY

// nameChangeMask are the events that make or unmake a name.
const nameChangeMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO

// unwatchedFSTypes are the file systems (statfs f_type) whose files
// change without local fanotify events: network and cluster file
// systems, changed by other hosts, and FUSE (virtiofs too), changed by
// its daemon's back end (another union's branches, say).
var unwatchedFSTypes = map[int64]string{
	0x6969:     "NFS",
	0xFF534D42: "CIFS",
	0xFE534D42: "SMB",
	0x517B:     "SMB",
	0x01021997: "9P",
	0x00C36400: "Ceph",
	0x5346414F: "AFS",
	0x6B414653: "AFS",
	0x0BD00BD0: "Lustre",
	0x01161970: "GFS2",
	0x7461636F: "OCFS2",
	0x65735546: "FUSE",
}

// maxOwnDirs bounds branchWatcher.ownDirs.
const maxOwnDirs = 4096

// eventBatchDelay is how long run waits after reading events before it
// reads again, so the events of the union's own changes to the rw branch
// (read to be dropped) are read a batch at a time, not one wakeup each.
const eventBatchDelay = 2 * time.Millisecond

// maskOf is the mark mask for branch b.
func maskOf(b *branch) uint64 {
	if b.isRW() {
		return rwWatchMask
	}
	return watchMask
}

// newBranchWatcher makes the fanotify group of u and marks the root of
// every branch. It needs kernel 5.9+ and CAP_SYS_ADMIN (or 5.13+ in a
// user namespace).
func newBranchWatcher(u *ufs) (*branchWatcher, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_DFID_NAME|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC)
	if errors.Is(err, syscall.EMFILE) {
		return nil, fmt.Errorf("fanotify_init: %w (one fanotify group per udba=notify mount; the limit is fs.fanotify.max_user_groups)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w (udba=notify needs kernel 5.9+ and CAP_SYS_ADMIN)", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &branchWatcher{u: u, fd: fd, wake: wake, self: int32(os.Getpid()),
		roots: map[*branch]branchRoot{}, dirs: map[string]watchedDir{}, marked: map[dirKey]bool{}, ownDirs: map[string]bool{}}
	if err := checkWatchable(u.branches); err != nil {
		w.close()
		return nil, err
	}
	for _, b := range u.branches {
		if err := w.addBranch(b); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

// checkWatchable fails for the first of branches whose changes the
// watcher would not all see: one on a file system whose files change
// without local events (unwatchedFSTypes), or one with another mount
// inside it (a /proc in a root file system, a disk mounted in a
// subdirectory): the watcher finds an event's branch by the file system
// it comes from, so it would never see changes made in there. (A mount
// made inside a branch later goes unseen as well.)
func checkWatchable(branches []*branch) error {
	for _, b := range branches {
		var st unix.Statfs_t
		if err := unix.Statfs(b.path, &st); err != nil {
			return fmt.Errorf("watch %s: %w", b.path, err)
		}
		if name, ok := unwatchedFSTypes[int64(st.Type)]; ok {
			return fmt.Errorf("watch %s: it is on %s, whose files change without events here", b.path, name)
		}
	}
	all, err := mountinfo.Read(0)
	if err != nil {
		return err
	}
	for _, b := range branches {
		root := b.path
		if real, err := filepath.EvalSymlinks(root); err == nil {
			root = real
		}
		for _, m := range mountinfo.Under(all, root) {
			if m.MountPoint != root {
				return fmt.Errorf("watch %s: %s is another mount (%s) inside it, whose changes the watcher cannot follow", b.path, m.MountPoint, m.FSType)
			}
		}
	}
	return nil
}

// addBranch watches branch b from its root.
func (w *branchWatcher) addBranch(b *branch) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	if _, ok := w.roots[b]; !ok {
		fd, err := syscall.Open(b.path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("watch %s: %w", b.path, err)
		}
		fsid, err := fsidOf(b.path)
		if err != nil {
			syscall.Close(fd)
			return fmt.Errorf("watch %s: %w", b.path, err)
		}
		w.roots[b] = branchRoot{fd: fd, fsid: fsid}
	}
	return w.markLocked(b, "")
}

// watch marks directory rel in each branch of layers (the branches that
// hold it) not marked yet. A directory that cannot be marked (gone
// meanwhile) is skipped: its creation is reported anew.
func (w *branchWatcher) watch(rel string, layers []*branch) {
	for _, b := range layers {
		w.mu.Lock()
		var err error
		if !w.marked[dirKey{b, rel}] && !w.closed {
			err = w.markLocked(b, rel)
		}
		w.mu.Unlock()
		if err != nil {
			w.report(err)
		}
	}
}

// watchNew marks a directory the union just made in the rw branch at path
// p (maybe a temporary name, renamed into place later: the mark stays
// with the directory), before the kernel can cache anything in it.
func (w *branchWatcher) watchNew(p string) {
	w.mu.Lock()
	var err error
	if !w.closed {
		err = unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR|unix.FAN_MARK_DONT_FOLLOW, rwWatchMask, unix.AT_FDCWD, p)
	}
	w.mu.Unlock()
	if err != nil {
		w.report(fmt.Errorf("watch %s: fanotify_mark: %w", p, err))
	}
}

// moved forgets which directories at or below rel of branch b were
// marked: another directory may take that place. The directories keep
// their marks.
func (w *branchWatcher) moved(b *branch, rel string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.marked {
		if k.b == b && (k.rel == rel || rel == "" || strings.HasPrefix(k.rel, rel+"/")) {
			delete(w.marked, k)
		}
	}
}

// report logs a failed mark: always the first that is not a directory
// gone meanwhile (a mark limit reached, fs.fanotify.max_user_marks: changes
// there show only after a remount), every one under debug.
func (w *branchWatcher) report(err error) {
	gone := errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR)
	w.mu.Lock()
	first := !gone && !w.warned
	if first {
		w.warned = true
	}
	w.mu.Unlock()
	if first || w.u.opts.Debug {
		log.Printf("udba=notify: %v; outside changes there show only after a remount", err)
	}
}

// markLocked adds a mark on directory rel of branch b. w.mu is held (the
// descriptor stays open meanwhile).
func (w *branchWatcher) markLocked(b *branch, rel string) error {
	p := b.join(rel)
	key, err := dirHandleKey(p)
	if err != nil {
		return fmt.Errorf("watch %s: %w", p, err)
	}
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR|unix.FAN_MARK_DONT_FOLLOW, maskOf(b), unix.AT_FDCWD, p); err != nil {
		return fmt.Errorf("watch %s: fanotify_mark: %w", p, err)
	}
	w.dirs[key] = watchedDir{b, rel}
	w.marked[dirKey{b, rel}] = true
	return nil
}

// unwatch drops the marks of branch b, removed from the stack. A
// directory moved or removed since keeps its mark until unmount.
func (w *branchWatcher) unwatch(b *branch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	for k := range w.marked {
		if k.b == b {
			_ = unix.FanotifyMark(w.fd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_ONLYDIR|unix.FAN_MARK_DONT_FOLLOW, maskOf(b), unix.AT_FDCWD, b.join(k.rel))
			delete(w.marked, k)
		}
	}
	for k, d := range w.dirs {
		if d.b == b {
			delete(w.dirs, k)
		}
	}
	if r, ok := w.roots[b]; ok {
		syscall.Close(r.fd)
		delete(w.roots, b)
	}
}

// fsidOf is the file system id of the file system holding p, as fanotify
// gives it in events.
func fsidOf(p string) (string, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(p, &sfs); err != nil {
		return "", err
	}
	fsid := (*[8]byte)(unsafe.Pointer(&sfs.Fsid))
	return string(fsid[:]), nil
}

// dirHandleKey is how fanotify names directory p in its events: the
// file system id and the file handle.
func dirHandleKey(p string) (string, error) {
	fsid, err := fsidOf(p)
	if err != nil {
		return "", err
	}
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, p, 0)
	if err != nil {
		return "", fmt.Errorf("name_to_handle_at: %w", err)
	}
	return handleKey([]byte(fsid), uint32(fh.Type()), fh.Bytes()), nil
}

func handleKey(fsid []byte, typ uint32, handle []byte) string {
	var t [4]byte
	binary.NativeEndian.PutUint32(t[:], typ)
	return string(fsid) + string(t[:]) + string(handle)
}

// change is one reported change: name (or "." for the directory itself)
// in directory rel of branch b; dirMoved says a directory was created,
// removed or moved there.
type change struct {
	b        *branch
	rel      string
	name     string
	dirMoved bool
}

// run reads and applies events until close, a batch at a time.
//
// It waits in poll(2), not in the runtime's netpoller: a descriptor in
// the netpoller's epoll set wakes its thread for every event queued, and
// most events are the union's own changes to the rw branch, one or more
// per create or unlink (that cost ~9% on an unlink of a lower file). A
// poll waits on the group only while run waits; events queued during a
// batch's processing and delay wake nobody.
func (w *branchWatcher) run() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.running = true
	w.mu.Unlock()
	buf := make([]byte, 64<<10)
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		w.mu.Lock()
		if w.closed {
			w.stopLocked()
			w.mu.Unlock()
			return
		}
		var n int
		if err == nil {
			n, err = unix.Read(w.fd, buf)
		}
		if err == unix.EINTR || err == unix.EAGAIN {
			w.mu.Unlock()
			continue
		}
		if err != nil || n <= 0 {
			w.stopLocked()
			w.mu.Unlock()
			log.Printf("udba=notify: read events: %v; outside changes to the branches no longer show", err)
			return
		}
		w.mu.Unlock()
		changes, overflow := w.parse(buf[:n])
		w.apply(changes, overflow)
		time.Sleep(eventBatchDelay)
	}
}

// stopLocked closes the group and the wake-up descriptor; marks fail
// from then on. w.mu is held.
func (w *branchWatcher) stopLocked() {
	if w.fd >= 0 {
		unix.Close(w.fd)
		unix.Close(w.wake)
		w.fd, w.wake = -1, -1
	}
	w.running = false
}

// event is one decoded event: the directory (fsid and handle), the name
// in it and what happened.
type event struct {
	fsid   string
	typ    uint32
	handle []byte
	name   string
	mask   uint64
	pid    int32
}

// parse decodes a buffer of events into changes of watched branches;
// overflow says the kernel dropped events.
func (w *branchWatcher) parse(buf []byte) (changes []change, overflow bool) {
	evs, overflow := decodeEvents(buf)
	seen := map[change]bool{}
	for _, ev := range evs {
		own := ev.pid == w.self
		key := handleKey([]byte(ev.fsid), ev.typ, ev.handle)
		if own && w.ownDirs[key] {
			continue
		}
		b, rel, ok := w.locate(ev, key)
		if !ok {
			continue
		}
		if own && b.isRW() {
			if len(w.ownDirs) >= maxOwnDirs {
				clear(w.ownDirs)
			}
			w.ownDirs[key] = true
			continue
		}
		c := change{b: b, rel: rel, name: ev.name, dirMoved: ev.mask&unix.FAN_ONDIR != 0 && ev.mask&nameChangeMask != 0}
		if !seen[c] {
			seen[c] = true
			changes = append(changes, c)
		}
	}
	return changes, overflow
}

// decodeEvents decodes the directory-and-name events of buf.
func decodeEvents(buf []byte) (evs []event, overflow bool) {
	const metaLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	for len(buf) >= metaLen {
		m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[0]))
		evLen := int(m.Event_len)
		if evLen < metaLen || evLen > len(buf) {
			break
		}
		if m.Mask&unix.FAN_Q_OVERFLOW != 0 {
			overflow = true
		}
		for info := buf[m.Metadata_len:evLen]; len(info) >= 4; {
			typ, l := info[0], int(binary.NativeEndian.Uint16(info[2:4]))
			if l < 4 || l > len(info) {
				break
			}
			if typ == unix.FAN_EVENT_INFO_TYPE_DFID_NAME && l >= 20 {
				rec := info[4:l]
				hlen := int(binary.NativeEndian.Uint32(rec[8:12]))
				if 16+hlen <= len(rec) {
					name, _, _ := strings.Cut(string(rec[16+hlen:]), "\x00")
					evs = append(evs, event{fsid: string(rec[0:8]), typ: binary.NativeEndian.Uint32(rec[12:16]),
						handle: rec[16 : 16+hlen], name: name, mask: m.Mask, pid: m.Pid})
				}
			}
			info = info[l:]
		}
		buf = buf[evLen:]
	}
	return evs, overflow
}

// locate finds the branch directory an event names: by opening the
// handle and reading back its path, so a directory moved since it was
// marked is found where it is now; where handles cannot be opened
// (CAP_DAC_READ_SEARCH is missing), by where it was marked.
func (w *branchWatcher) locate(ev event, key string) (*branch, string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	mountFd := -1
	for _, r := range w.roots {
		if r.fsid == ev.fsid {
			mountFd = r.fd
			break
		}
	}
	if mountFd >= 0 {
		fd, err := unix.OpenByHandleAt(mountFd, unix.NewFileHandle(int32(ev.typ), ev.handle), unix.O_PATH|unix.O_CLOEXEC)
		switch {
		case err == nil:
			p, ok := fdPath(fd)
			syscall.Close(fd)
			if !ok {
				return nil, "", false
			}
			for b := range w.roots {
				if p == b.path {
					return b, "", true
				}
				if rel, ok := strings.CutPrefix(p, b.path+"/"); ok {
					return b, rel, true
				}
			}
			return nil, "", false
		case errors.Is(err, syscall.ESTALE) || errors.Is(err, syscall.ENOENT):
			// Gone: its removal is reported in its parent.
			return nil, "", false
		}
	}
	d, ok := w.dirs[key]
	return d.b, d.rel, ok
}

// apply drops what the daemon cached of the branches (all of it: outside
// changes are rare) and what the kernel cached of each changed name:
// the name itself, negative or not, its node's attributes and pages, and
// its directory's attributes and listing. A whiteout stands for the name
// it hides, an opaque marker for every name of its directory. After an
// overflow the kernel drops everything it cached.
func (w *branchWatcher) apply(changes []change, overflow bool) {
	if len(changes) == 0 && !overflow {
		return
	}
	w.applied.Add(int64(len(changes)))
	u := w.u
	u.lockNS()
	u.forgetResolutionsLocked()
	branches := append([]*branch(nil), u.branches...)
	u.ns.Unlock()
	if overflow {
		u.notifyIncEpoch()
		for _, b := range branches {
			w.moved(b, "")
			u.invalidateBranch(b)
		}
		return
	}
	for _, c := range changes {
		if c.dirMoved {
			w.moved(c.b, joinRel(c.rel, c.name))
		}
		dir := u.inodeAt(c.rel)
		if dir == nil {
			continue // the kernel has nothing of it cached
		}
		_ = dir.NotifyContent(0, 0)
		name := c.name
		switch {
		case name == "." || name == "":
			continue
		case name == opqMarker:
			u.invalidateNamesIn(dir, c.rel, branches)
			continue
		case isWhiteoutName(name):
			name = name[len(whPrefix):]
		}
		_ = dir.NotifyEntry(name)
		if ch := dir.GetChild(name); ch != nil {
			_ = ch.NotifyContent(0, 0)
		}
	}
}

// invalidateNamesIn drops the kernel's entries of directory dir (at rel)
// for every name it knows there and every name a branch holds there,
// which covers the negative entries of names an opaque marker hid.
func (u *ufs) invalidateNamesIn(dir *fs.Inode, rel string, branches []*branch) {
	for name := range dir.Children() {
		_ = dir.NotifyEntry(name)
	}
	for _, b := range branches {
		notifyBranchNames(dir, b, rel)
	}
}

// inodeAt is the kernel-known inode of directory rel, or nil.
func (u *ufs) inodeAt(rel string) *fs.Inode {
	n := u.root.EmbeddedInode()
	if rel == "" {
		return n
	}
	for _, name := range strings.Split(rel, "/") {
		if n = n.GetChild(name); n == nil {
			return nil
		}
	}
	return n
}

// close ends run and drops the marks.
func (w *branchWatcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if w.running {
		// run closes them once its poll returns.
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		_, _ = unix.Write(w.wake, one[:])
	} else {
		w.stopLocked()
	}
	for b, r := range w.roots {
		syscall.Close(r.fd)
		delete(w.roots, b)
	}
}

// watchNewDir marks directory p, just made in the rw branch, under
// udba=notify.
func (u *ufs) watchNewDir(p string) {
	if u.watcher != nil {
		u.watcher.watchNew(p)
	}
}

// dirGone tells the watcher (udba=notify) that the directory at rel of
// the rw branch was removed or moved through the union: another may take
// its place.
func (u *ufs) dirGone(rel string) {
	if u.watcher != nil {
		u.watcher.moved(u.rw, rel)
	}
}
