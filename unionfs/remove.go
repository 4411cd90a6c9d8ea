package unionfs

import (
	"context"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

var (
	_ fs.NodeUnlinker = (*node)(nil)
	_ fs.NodeRmdirer  = (*node)(nil)
)

// Unlink removes the rw copy of name and writes a whiteout when a lower
// branch still shows it.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, false)
}

// Rmdir removes an empty (in the union) directory: its rw part, then a
// whiteout when a lower branch still has it.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, true)
}

func (n *node) remove(name string, dir bool) syscall.Errno {
	u := n.u
	if isWhiteoutName(name) {
		return syscall.ENOENT
	}
	if u.rw == nil {
		return syscall.EROFS
	}
	u.lockNS()
	defer u.ns.Unlock()
	pe, prel, errno := n.resolve()
	if errno != 0 {
		return errno
	}
	e, errno := n.childEntry(pe, prel, name, dir)
	if errno != 0 {
		return errno
	}
	if dir && !e.isDir() {
		return syscall.ENOTDIR
	}
	if !dir && e.isDir() {
		return syscall.EISDIR
	}
	if dir {
		names, errno := mergedNames(e.layers, joinRel(prel, name))
		if errno != 0 {
			return errno
		}
		if len(names) > 0 {
			return syscall.ENOTEMPTY
		}
	}
	// A name found below the rw branch is itself what a lower branch
	// shows; only an rw name needs the branches below it searched.
	hasLower := e.top != u.rw
	if !hasLower {
		_, hasLower = lowerHas(pe.layers, u.rw, prel, name)
	}
	if hasLower {
		if errno := u.ensureUpperDir(n); errno != 0 {
			return errno
		}
	}
	// An open descriptor of a removed directory still answers fstat
	// (dirRemoved): with its attributes as they are now.
	var dirSt syscall.Stat_t
	if dir {
		_ = e.top.lstat(joinRel(prel, name), &dirSt)
	}
	switch {
	case e.top == u.rw && hasLower:
		// The whiteout goes in first, beside the rw entry (which it
		// does not hide), and removing the entry uncovers it: a full
		// branch fails the removal before anything changed, and a crash
		// leaves the entry or its whiteout, never the lower name showing
		// again. A directory is then moved into the work directory whole
		// and removed there, so a crash never leaves it in place with
		// some of the whiteouts it held gone (and what they hid showing).
		if dir {
			if errno := u.rw.onlyWhiteouts(joinRel(prel, name)); errno != 0 {
				return errno
			}
		}
		if errno := u.writeWhiteout(prel, name); errno != 0 {
			return errno
		}
		if errno := u.removeUpper(joinRel(prel, name), &e.st, dir, true); errno != 0 {
			return errno
		}
	case e.top == u.rw:
		if errno := u.removeUpper(joinRel(prel, name), &e.st, dir, false); errno != 0 {
			return errno
		}
	default:
		if errno := u.writeWhiteout(prel, name); errno != 0 {
			return errno
		}
		u.links.whiteout(e)
	}
	if dir {
		n.dirRemoved(name, dirSt)
		u.dirGone(joinRel(prel, name))
	}
	return 0
}

// childEntry finds name in directory n (entry pe, path prel) for its
// removal. A file the kernel looked up is where its node says: the
// kernel looks a name up again (which renews the node's entry) once its
// entry timeout passed, so that entry is as fresh as the kernel's own
// view of the name, and a second search of the stack right after the
// LOOKUP would cost a few system calls for nothing. Directories, whose
// removal depends on the contents of every layer, names without a node
// and files with more than one name (whose node is shared by the names,
// its entry that of any of them) are searched for. The caller holds
// u.ns exclusively.
func (n *node) childEntry(pe *entry, prel, name string, dir bool) (*entry, syscall.Errno) {
	if !dir {
		if in := n.GetChild(name); in != nil {
			if cn, ok := in.Operations().(*node); ok {
				cn.mu.Lock()
				e, valid := cn.e, cn.e != nil && cn.gen == n.u.gen.Load()
				cn.mu.Unlock()
				if valid && !e.isDir() && e.st.Nlink <= 1 {
					return e, 0
				}
			}
		}
	}
	return lookupIn(pe.layers, prel, name)
}

// removeUpper removes rw entry rel (a directory holding only whiteouts)
// and forgets its inode key when the file is gone. A directory is
// moved into the work directory and removed there when aside says so,
// else its whiteouts are removed and then it.
func (u *ufs) removeUpper(rel string, id *fileID, dir, aside bool) syscall.Errno {
	p, release, errno := u.rw.confine(rel)
	if errno != 0 {
		return errno
	}
	defer release()
	if dir && aside {
		if errno := u.removeAside(p); errno != 0 {
			return errno
		}
		u.numberGone(id.key())
		return 0
	}
	if dir {
		if errno := u.rw.clearWhiteouts(rel); errno != 0 {
			return errno
		}
		if err := syscall.Rmdir(p); err != nil {
			return errnoOf(err)
		}
		u.numberGone(id.key())
		return 0
	}
	if err := syscall.Unlink(p); err != nil {
		return errnoOf(err)
	}
	if id.Nlink <= 1 {
		u.numberGone(id.key())
	}
	return 0
}

// removeAside moves the rw directory p into the work directory in one
// rename, and removes it there; what a crash leaves of it goes with the
// next mount's cleaning of the work directory.
func (u *ufs) removeAside(p string) syscall.Errno {
	tmp, errno := u.tempName("rm")
	if errno != 0 {
		return errno
	}
	if err := syscall.Rename(p, tmp); err != nil {
		return errnoOf(err)
	}
	_ = removeTree(tmp)
	return 0
}

// removeTree deletes an rw directory tree.
func removeTree(p string) syscall.Errno { return errnoOf(os.RemoveAll(p)) }
