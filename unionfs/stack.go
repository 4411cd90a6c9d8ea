package unionfs

import (
	"errors"
	"strings"
	"syscall"
)

// Names aufs reserves in every branch.
const (
	whPrefix  = ".wh."
	opqMarker = ".wh..wh..opq"
	workName  = ".wh..wh.orph" // temporary files of copy-up, in the rw branch
)

// branch is one directory of the live stack.
type branch struct {
	path string
	mode Mode
	dev  uint64
	open int // handles holding a descriptor in this branch (guarded by ufs.stateMu)
}

func (b *branch) join(rel string) string {
	if rel == "" {
		return b.path
	}
	return b.path + "/" + rel
}

// searchesWhiteouts reports whether whiteouts and opaque markers in b count.
func (b *branch) searchesWhiteouts() bool { return b.mode != RR }

// entry is the result of looking a name up through a stack of directory
// layers: the top-most branch holding it, its stat there, and for a
// directory every branch that contributes to its merged contents.
type entry struct {
	top    *branch
	st     syscall.Stat_t
	layers []*branch // for directories: contributing branches, top first
}

func (e *entry) isDir() bool { return e.st.Mode&syscall.S_IFMT == syscall.S_IFDIR }

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func exists(p string) bool {
	var st syscall.Stat_t
	return syscall.Lstat(p, &st) == nil
}

// lookupIn finds name in directory rel whose merged contents come from
// layers (top first). It honours whiteouts and opaque directories of
// branches that are not RR.
func lookupIn(layers []*branch, rel, name string) (*entry, syscall.Errno) {
	var e *entry
	crel := joinRel(rel, name)
	for _, b := range layers {
		var st syscall.Stat_t
		err := syscall.Lstat(b.join(crel), &st)
		if err == nil {
			isDir := st.Mode&syscall.S_IFMT == syscall.S_IFDIR
			if e == nil {
				e = &entry{top: b, st: st}
				if !isDir {
					return e, 0
				}
			} else if !isDir {
				// A non-directory below a directory ends the merge.
				return e, 0
			}
			e.layers = append(e.layers, b)
			if b.searchesWhiteouts() && exists(b.join(crel+"/"+opqMarker)) {
				return e, 0
			}
		} else if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENOTDIR) {
			if e == nil {
				return nil, errnoOf(err)
			}
			return e, 0
		}
		if b.searchesWhiteouts() && exists(b.join(joinRel(rel, whPrefix+name))) {
			break
		}
	}
	if e == nil {
		return nil, syscall.ENOENT
	}
	return e, 0
}

// lowerHas reports whether name in rel is visible from the branches of
// layers below rw, as if rw held neither the name nor its whiteout.
func lowerHas(layers []*branch, rw *branch, rel, name string) (*entry, bool) {
	var below []*branch
	for _, b := range layers {
		if b != rw {
			below = append(below, b)
		}
	}
	e, errno := lookupIn(below, rel, name)
	return e, errno == 0
}

// isWhiteoutName reports names the union keeps to itself.
func isWhiteoutName(name string) bool { return strings.HasPrefix(name, whPrefix) }

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return syscall.EIO
}
