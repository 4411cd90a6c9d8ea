package unionfs

import (
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A walk that lists a directory and stats its names is answered by
// READDIRPLUS, which asks the daemon for the attributes of each listed
// name in turn (dirHandle.Lookup); the walker waits on each request, so
// one CPU does the daemon's work while another idles. A statAhead stats
// a listing's lower files on that other CPU ahead of the requests, and
// lookupListed takes the stats it finds taken instead of making the
// system call itself.
//
// A stat taken ahead is as good as one taken at the request: the listing
// it belongs to is trusted only while the namespace did not change
// through the union since (nsSeq, which copy-ups and the branch
// watcher's changes move too), and a lower file changes through the
// union only by a copy-up. Files of the rw branch, which writes through
// passthrough handles change without the daemon seeing it, are stated
// at the request as before.

// statAheadMin is the fewest files a listing needs to be stated ahead.
const statAheadMin = 16

// statAheadMax bounds the files one statAhead takes (and the stats it
// keeps: 144 bytes each while the directory handle is open).
const statAheadMax = 4096

// statAheadSlots bounds the statAheads running at once in the process,
// so parallel walks do not add work the CPUs have no room for.
var statAheadSlots = make(chan struct{}, 2)

// Stat states of a statAhead's names.
const (
	aheadPending int32 = iota
	aheadTaken
	aheadFailed
)

// statAhead holds the stats of a listing's lower files, taken in listing
// order by a goroutine.
type statAhead struct {
	pos   map[string]int32 // index of each name in names
	names []string
	sts   []syscall.Stat_t
	state []atomic.Int32 // aheadPending until sts[i] is written
}

// startStatAhead starts stating the names of lt, from from on in listing
// order (names, the snapshot's names), that live in branch br (read-only)
// through dirFd, a descriptor of the directory in br. It returns nil,
// starting nothing, when there are too few such names, br is the rw
// branch, or enough statAheads run already.
func startStatAhead(lt *listedTops, names []string, from string, dirFd int, br *branch) *statAhead {
	if br == nil || br.isRW() || dirFd < 0 {
		return nil
	}
	sa := &statAhead{pos: map[string]int32{}}
	started := false
	for _, name := range names {
		if !started {
			started = name == from
		}
		if !started {
			continue
		}
		if d, ok := lt.tops[name]; ok && d.br == br {
			sa.pos[name] = int32(len(sa.names))
			sa.names = append(sa.names, name)
			if len(sa.names) == statAheadMax {
				break
			}
		}
	}
	if len(sa.names) < statAheadMin {
		return nil
	}
	select {
	case statAheadSlots <- struct{}{}:
	default:
		return nil
	}
	fd, err := unix.FcntlInt(uintptr(dirFd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		<-statAheadSlots
		return nil
	}
	sa.sts = make([]syscall.Stat_t, len(sa.names))
	sa.state = make([]atomic.Int32, len(sa.names))
	go sa.run(fd)
	return sa
}

// run stats the names through fd, a descriptor of their directory it
// closes when done.
func (sa *statAhead) run(fd int) {
	defer func() {
		unix.Close(fd)
		<-statAheadSlots
	}()
	for i, name := range sa.names {
		if sa.state[i].Load() != aheadPending {
			continue
		}
		// x/sys/unix's Stat_t is the kernel's struct stat, as syscall's is.
		err := unix.Fstatat(fd, name, (*unix.Stat_t)(unsafe.Pointer(&sa.sts[i])), unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			sa.state[i].CompareAndSwap(aheadPending, aheadFailed)
			continue
		}
		sa.state[i].CompareAndSwap(aheadPending, aheadTaken)
	}
}

// take copies the stat of name to st if it was taken, and reports
// whether it was. A name not taken yet is given up: the caller stats it,
// and run skips it.
func (sa *statAhead) take(name string, st *syscall.Stat_t) bool {
	if sa == nil {
		return false
	}
	i, ok := sa.pos[name]
	if !ok {
		return false
	}
	s := &sa.state[i]
	if s.CompareAndSwap(aheadPending, aheadFailed) {
		return false
	}
	if s.Load() == aheadTaken {
		*st = sa.sts[i]
		statAheadUsed.Add(1)
		return true
	}
	return false
}

// statAheadUsed counts the stats taken ahead that lookups used, for
// tests and debugging.
var statAheadUsed atomic.Int64
