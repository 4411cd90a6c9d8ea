package unionfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// branchWatcher serves udba=notify, as aufs's fsnotify-based udba=notify
// does: the kernel may cache names, attributes and listings for long, and
// a change made from outside to a read-only branch is reported by the
// kernel (fanotify, events naming the directory by file handle and the
// changed name) and drops what the daemon and the kernel cached of it.
//
// Every directory of a read-only branch that a lookup passes through is
// marked (the root at mount), which covers all the kernel can have
// cached: a name new in a branch appears in a directory of it that is
// marked, or in one created in a marked directory. The rw branch is not
// watched: the union changes it itself, and watching it would report
// every change made through the mount back to the daemon.
//
// The costs: a fanotify group per mount (fs.fanotify.max_user_groups, 128
// by default) and a mark per directory looked up, which keeps that inode
// in memory until unmount (fs.fanotify.max_user_marks bounds them all).
type branchWatcher struct {
	u    *ufs
	fd   int      // the fanotify group, for marks
	file *os.File // the same, for reads through the runtime's poller

	mu     sync.Mutex
	dirs   map[string]watchedDir // by fsid and file handle of the directory
	marked map[dirKey]bool       // branch directories marked
	closed bool
	warned bool // a failed mark was logged
}

// watchedDir is a marked directory: rel of branch b.
type watchedDir struct {
	b   *branch
	rel string
}

// watchMask is what a mark reports: names created, removed and moved in
// the directory (subdirectories too), and the content and attributes of
// its entries and of itself.
const watchMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO |
	unix.FAN_ATTRIB | unix.FAN_MODIFY | unix.FAN_ONDIR | unix.FAN_EVENT_ON_CHILD

// newBranchWatcher makes the fanotify group of u and marks the root of
// every read-only branch. It needs kernel 5.9+ and CAP_SYS_ADMIN (or
// 5.13+ in a user namespace).
func newBranchWatcher(u *ufs) (*branchWatcher, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_DFID_NAME|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC)
	if errors.Is(err, syscall.EMFILE) {
		return nil, fmt.Errorf("fanotify_init: %w (one fanotify group per udba=notify mount; the limit is fs.fanotify.max_user_groups)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w (udba=notify needs kernel 5.9+ and CAP_SYS_ADMIN)", err)
	}
	// A non-blocking descriptor goes to the runtime's poller, so close
	// ends a read in progress.
	w := &branchWatcher{u: u, fd: fd, file: os.NewFile(uintptr(fd), "fanotify"), dirs: map[string]watchedDir{}, marked: map[dirKey]bool{}}
	for _, b := range u.branches {
		if b.mode == RW {
			continue
		}
		w.mu.Lock()
		err := w.markLocked(b, "")
		w.mu.Unlock()
		if err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

// watch marks directory rel in each read-only branch of layers (the
// branches that hold it) not marked yet. A directory that cannot be
// marked (gone meanwhile) is skipped: its creation is reported anew.
func (w *branchWatcher) watch(rel string, layers []*branch) {
	for _, b := range layers {
		if b.mode == RW {
			continue
		}
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
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR|unix.FAN_MARK_DONT_FOLLOW, watchMask, unix.AT_FDCWD, p); err != nil {
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
			_ = unix.FanotifyMark(w.fd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_ONLYDIR|unix.FAN_MARK_DONT_FOLLOW, watchMask, unix.AT_FDCWD, b.join(k.rel))
			delete(w.marked, k)
		}
	}
	for k, d := range w.dirs {
		if d.b == b {
			delete(w.dirs, k)
		}
	}
}

// dirHandleKey is how fanotify names directory p in its events: the
// file system id and the file handle.
func dirHandleKey(p string) (string, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(p, &sfs); err != nil {
		return "", err
	}
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, p, 0)
	if err != nil {
		return "", fmt.Errorf("name_to_handle_at: %w", err)
	}
	fsid := (*[8]byte)(unsafe.Pointer(&sfs.Fsid))
	return handleKey(fsid[:], uint32(fh.Type()), fh.Bytes()), nil
}

func handleKey(fsid []byte, typ uint32, handle []byte) string {
	var t [4]byte
	binary.NativeEndian.PutUint32(t[:], typ)
	return string(fsid) + string(t[:]) + string(handle)
}

// change is one reported change: name (or "." for the directory itself)
// in directory rel of a read-only branch.
type change struct{ rel, name string }

// run reads and applies events until close.
func (w *branchWatcher) run() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil || n <= 0 {
			w.mu.Lock()
			closed := w.closed
			w.mu.Unlock()
			if !closed {
				log.Printf("udba=notify: read events: %v; outside changes to the branches no longer show", err)
			}
			return
		}
		changes, overflow := w.parse(buf[:n])
		w.apply(changes, overflow)
	}
}

// parse decodes a buffer of events into changes of known directories;
// overflow says the kernel dropped events.
func (w *branchWatcher) parse(buf []byte) (changes []change, overflow bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	const metaLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	seen := map[change]bool{}
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
					key := handleKey(rec[0:8], binary.NativeEndian.Uint32(rec[12:16]), rec[16:16+hlen])
					name, _, _ := strings.Cut(string(rec[16+hlen:]), "\x00")
					if d, ok := w.dirs[key]; ok {
						c := change{d.rel, name}
						if !seen[c] {
							seen[c] = true
							changes = append(changes, c)
						}
					}
				}
			}
			info = info[l:]
		}
		buf = buf[evLen:]
	}
	return changes, overflow
}

// apply drops what the daemon cached of the branches (all of it: outside
// changes are rare) and what the kernel cached of each changed name:
// the name itself, negative or not, its node's attributes and pages, and
// its directory's attributes and listing. After an overflow the kernel
// drops everything it cached.
func (w *branchWatcher) apply(changes []change, overflow bool) {
	if len(changes) == 0 && !overflow {
		return
	}
	u := w.u
	u.lockNS()
	u.forgetResolutionsLocked()
	branches := append([]*branch(nil), u.branches...)
	u.ns.Unlock()
	if overflow {
		for _, b := range branches {
			if b.mode != RW {
				u.invalidateBranch(b)
			}
		}
		return
	}
	for _, c := range changes {
		dir := u.inodeAt(c.rel)
		if dir == nil {
			continue // the kernel has nothing of it cached
		}
		_ = dir.NotifyContent(0, 0)
		if c.name == "." || c.name == "" {
			continue
		}
		_ = dir.NotifyEntry(c.name)
		if ch := dir.GetChild(c.name); ch != nil {
			_ = ch.NotifyContent(0, 0)
		}
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
	w.file.Close()
}
