package archive

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Small regular files are written by a pool of goroutines while the main
// goroutine goes on parsing the tar: creating inodes is kernel CPU time
// (about half a millisecond a file on a busy ext4), which a second core
// can share. The main goroutine reads each file's content into memory and
// hands over a job; any entry other than a plain new file first waits for
// all jobs (drain), so the order of effects stays the tar's order where it
// matters (parents, replacements, links, whiteouts, directory metadata).

// asyncMax is the largest file handed to the pool.
const asyncMax = 256 << 10

// dirRef is a directory fd shared by the parent cache and pending jobs;
// the last one to release it closes it.
type dirRef struct {
	fd   int
	refs atomic.Int32
}

func newDirRef(fd int) *dirRef {
	d := &dirRef{fd: fd}
	d.refs.Store(1)
	return d
}

func (d *dirRef) acquire() *dirRef { d.refs.Add(1); return d }

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}

// entryError is an error of the entry named name, found by a worker.
type entryError struct {
	name string
	err  error
}

func (e *entryError) Error() string { return fmt.Sprintf("entry %q: %v", e.name, e.err) }
func (e *entryError) Unwrap() error { return e.err }

// fileJob creates one regular file.
type fileJob struct {
	dir        *dirRef
	name, rel  string
	base       string
	data       []byte
	bufp       *[]byte
	uid, gid   int
	chown      bool
	mode       uint32
	createMode uint32
	exact      bool
	xattrs     [][2]string
	times      [2]unix.Timespec
}

var jobBufPool = sync.Pool{New: func() any { b := make([]byte, asyncMax); return &b }}

func (j *fileJob) run() error {
	fd, err := unix.Openat(j.dir.fd, j.base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, j.createMode)
	if err != nil {
		return &pathErr{"create", j.rel, err}
	}
	defer unix.Close(fd)
	if err := writeData(fd, j.data, int64(len(j.data))); err != nil {
		return fmt.Errorf("write %s: %w", j.rel, err)
	}
	if j.chown {
		if err := unix.Fchown(fd, j.uid, j.gid); err != nil {
			return &pathErr{"chown", j.rel, err}
		}
	}
	if !j.exact {
		if err := unix.Fchmod(fd, j.mode); err != nil {
			return &pathErr{"chmod", j.rel, err}
		}
	}
	for _, kv := range j.xattrs {
		if err := unix.Fsetxattr(fd, kv[0], []byte(kv[1]), 0); err != nil {
			if kv[0] == "security.selinux" && (err == unix.ENOTSUP || err == unix.EOPNOTSUPP) {
				continue
			}
			return fmt.Errorf("%s: set xattr %s: %w", j.rel, kv[0], err)
		}
	}
	if err := unix.UtimesNanoAt(j.dir.fd, j.base, j.times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &pathErr{"set times", j.rel, err}
	}
	return nil
}

// writerPool runs fileJobs.
type writerPool struct {
	jobs    chan *fileJob
	pending sync.WaitGroup // jobs handed out and not done
	workers sync.WaitGroup
	failed  atomic.Bool
	mu      sync.Mutex
	err     error
	names   map[string]struct{} // rel of pending jobs (main goroutine only)
}

func newWriterPool() *writerPool {
	n := min(max(runtime.GOMAXPROCS(0), 2), 8)
	p := &writerPool{jobs: make(chan *fileJob, 64), names: map[string]struct{}{}}
	p.workers.Add(n)
	for range n {
		go p.work()
	}
	return p
}

func (p *writerPool) work() {
	defer p.workers.Done()
	for j := range p.jobs {
		if !p.failed.Load() {
			if err := j.run(); err != nil {
				p.mu.Lock()
				if p.err == nil {
					p.err = &entryError{j.name, err}
				}
				p.mu.Unlock()
				p.failed.Store(true)
			}
		}
		j.dir.release()
		jobBufPool.Put(j.bufp)
		p.pending.Done()
	}
}

// submit hands j to the pool.
func (p *writerPool) submit(j *fileJob) {
	p.names[j.rel] = struct{}{}
	p.pending.Add(1)
	p.jobs <- j
}

// isPending reports whether a job for rel may not have run yet.
func (p *writerPool) isPending(rel string) bool {
	_, ok := p.names[rel]
	return ok
}

// error returns the first error of a job, if any.
func (p *writerPool) error() error {
	if !p.failed.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// drain waits for every job handed out.
func (p *writerPool) drain() error {
	p.pending.Wait()
	clear(p.names)
	return p.error()
}

// stop makes the workers skip what is left and ends them.
func (p *writerPool) stop() {
	p.failed.Store(true)
	close(p.jobs)
	p.workers.Wait()
}
