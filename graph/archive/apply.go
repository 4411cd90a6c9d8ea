package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Errors for refused entries.
var (
	errBadHeader    = errors.New("bad header")
	errLinkNotFound = errors.New("hard link target not found")
	errUnsupported  = errors.New("unsupported entry type")
)

// copyBufSize is the buffer file contents are copied through.
const copyBufSize = 1 << 20

// holeBlock is the granularity at which runs of zeros become holes.
const holeBlock = 4096

var (
	zeroBlock = make([]byte, holeBlock)
	zeroBuf   = make([]byte, copyBufSize)
)

// dirMeta is the metadata of a directory applied after its contents.
type dirMeta struct {
	mode         uint32
	atime, mtime unix.Timespec
}

// applier unpacks one layer.
type applier struct {
	ctx  context.Context
	opts ApplyOptions
	t    *tree
	tr   *tar.Reader
	rec  *splitRecorder

	parents []*tree

	layer   map[string]struct{} // paths this layer has an entry for
	above   map[string]struct{} // directories with such paths below them
	planted map[string]struct{} // symlinks this layer created
	dirs    map[string]dirMeta  // directory metadata set at the end

	cacheRel string  // the parent directory last opened ...
	cacheFd  int     // ... and its fd, or -1
	cacheRef *dirRef // ... shared with pending jobs
	pool     *writerPool
	// cacheSetgid: the cached directory has the setgid bit, so new
	// entries in it take its group rather than ours.
	cacheSetgid bool
	// cacheACL: the cached directory has a default ACL (or we could not
	// tell), so a new file's mode is not just its create mode minus umask.
	cacheACL   bool
	euid, egid int
	stale      bool // a directory or symlink was removed: drop the cache

	buf []byte
}

func applyLayer(ctx context.Context, root string, r io.Reader, opts ApplyOptions) (res ApplyResult, err error) {
	if opts.Format < FormatTree || opts.Format > FormatOverlayUser {
		return res, fmt.Errorf("apply layer: unknown format %d", opts.Format)
	}
	t, err := openTree(root)
	if err != nil {
		return res, fmt.Errorf("apply layer: %w", err)
	}
	a := &applier{
		ctx: ctx, opts: opts, t: t,
		layer: map[string]struct{}{}, above: map[string]struct{}{}, planted: map[string]struct{}{}, dirs: map[string]dirMeta{},
		cacheFd: -1, euid: unix.Geteuid(), egid: unix.Getegid(),
	}
	defer a.close()
	for _, p := range opts.Parents {
		pt, err := openTree(p)
		if err != nil {
			return res, fmt.Errorf("apply layer: parent: %w", err)
		}
		a.parents = append(a.parents, pt)
	}

	dr, comp, err := decompressStream(r)
	res.Compression = comp
	if err != nil {
		return res, fmt.Errorf("apply layer: %w", err)
	}
	defer dr.Close()
	cr := newChunkReader(dr)
	defer cr.Close()

	var src io.Reader = cr
	if opts.TarSplit != nil {
		a.rec = newSplitRecorder(cr, opts.TarSplit)
		src = a.rec
	}
	a.tr = tar.NewReader(src)
	a.buf = make([]byte, copyBufSize)
	a.pool = newWriterPool()

	last := ""
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("apply layer: %w", err)
		}
		hdr, err := a.tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if last == "" {
				return res, fmt.Errorf("apply layer: first entry: %w", err)
			}
			return res, fmt.Errorf("apply layer: entry after %q: %w", last, err)
		}
		last = hdr.Name
		if a.rec != nil {
			if err := a.rec.flush(); err != nil {
				return res, fmt.Errorf("apply layer: entry %q: tar-split: %w", hdr.Name, err)
			}
		}
		if err := a.entry(hdr); err != nil {
			return res, entryErr(hdr.Name, err)
		}
		if err := a.pool.error(); err != nil {
			return res, entryErr(hdr.Name, err)
		}
	}
	if err := a.pool.drain(); err != nil {
		return res, entryErr(last, err)
	}
	// Read to the very end so the DiffID covers the trailing padding.
	if _, err := io.CopyBuffer(io.Discard, src, a.buf); err != nil {
		return res, fmt.Errorf("apply layer: after the last entry: %w", err)
	}
	if err := a.finishDirs(); err != nil {
		return res, fmt.Errorf("apply layer: %w", err)
	}
	if a.rec != nil {
		if err := a.rec.close(); err != nil {
			return res, fmt.Errorf("apply layer: tar-split: %w", err)
		}
	}
	sum, size := cr.digest()
	res.DiffID = digest.NewDigestFromBytes(digest.SHA256, sum)
	res.Size = size
	return res, nil
}

// entryErr words the error of entry name, or of the earlier entry a
// worker failed on.
func entryErr(name string, err error) error {
	var ee *entryError
	if errors.As(err, &ee) {
		name, err = ee.name, ee.err
	}
	return fmt.Errorf("apply layer: entry %q: %w", name, err)
}

func (a *applier) close() {
	if a.pool != nil {
		a.pool.stop()
	}
	a.dropCache()
	a.t.close()
	for _, p := range a.parents {
		p.close()
	}
}

func (a *applier) dropCache() {
	if a.cacheRef != nil {
		a.cacheRef.release()
		a.cacheRef = nil
	}
	a.cacheFd = -1
}

// parent returns an fd (owned by the applier) of directory rel, creating
// missing directories when create is set.
func (a *applier) parent(rel string, create bool) (int, error) {
	if a.stale {
		a.dropCache()
		a.stale = false
	}
	if rel == "" {
		return a.t.fd, nil
	}
	if a.cacheFd >= 0 && a.cacheRel == rel {
		return a.cacheFd, nil
	}
	fd, err := a.walk(rel, create)
	if err != nil {
		return -1, err
	}
	a.dropCache()
	var st unix.Stat_t
	a.cacheSetgid = unix.Fstat(fd, &st) != nil || st.Mode&unix.S_ISGID != 0
	_, aclErr := unix.Getxattr("/proc/self/fd/"+strconv.Itoa(fd), "system.posix_acl_default", nil)
	a.cacheACL = aclErr != unix.ENODATA && aclErr != unix.ENOTSUP && aclErr != unix.EOPNOTSUPP
	a.cacheRel, a.cacheFd, a.cacheRef = rel, fd, newDirRef(fd)
	return fd, nil
}

// walk opens directory rel component by component, strictly inside the
// root. A symlink on the way is refused when this layer planted it or it
// points above the root; in a full tree (FormatTree) a symlink of a lower
// layer is followed as the container would see it, never leaving the root
// (RESOLVE_IN_ROOT). The caller owns the returned fd.
func (a *applier) walk(rel string, create bool) (int, error) {
	if fd, err := a.t.beneath(rel, unix.O_PATH|unix.O_DIRECTORY); err == nil {
		return fd, nil
	}
	cur, err := unix.Dup(a.t.fd)
	if err != nil {
		return -1, err
	}
	soFar := ""
	for _, comp := range strings.Split(rel, "/") {
		next := comp
		if soFar != "" {
			next = soFar + "/" + comp
		}
		fd, err := openat2(cur, comp, unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_BENEATH|unix.RESOLVE_NO_SYMLINKS|unix.RESOLVE_NO_MAGICLINKS)
		switch err {
		case nil:
		case unix.ENOENT:
			if !create {
				unix.Close(cur)
				return -1, &pathErr{"open", next, err}
			}
			if err := unix.Mkdirat(cur, comp, 0o755); err != nil && err != unix.EEXIST {
				unix.Close(cur)
				return -1, &pathErr{"mkdir", next, err}
			}
			a.mark(next)
			a.implicitDir(cur, comp, next)
			fd, err = openat2(cur, comp, unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_BENEATH|unix.RESOLVE_NO_SYMLINKS|unix.RESOLVE_NO_MAGICLINKS)
			if err != nil {
				unix.Close(cur)
				return -1, &pathErr{"open", next, err}
			}
		case unix.ELOOP:
			fd, err = a.followSymlink(cur, comp, next)
			if err != nil {
				unix.Close(cur)
				return -1, err
			}
		case unix.ENOTDIR:
			unix.Close(cur)
			return -1, fmt.Errorf("%q: %w", next, errNotDir)
		default:
			unix.Close(cur)
			return -1, &pathErr{"open", next, err}
		}
		unix.Close(cur)
		cur, soFar = fd, next
	}
	return cur, nil
}

// followSymlink decides about the symlink comp (at rel) met while walking.
func (a *applier) followSymlink(dirfd int, comp, rel string) (int, error) {
	if _, ok := a.planted[rel]; ok {
		return -1, fmt.Errorf("%q: %w", rel, errPlantedSymlink)
	}
	if a.opts.Format != FormatTree {
		return -1, fmt.Errorf("%q: path goes through a symlink in a %s layer", rel, a.opts.Format)
	}
	target, err := readlinkAt(dirfd, comp)
	if err != nil {
		return -1, &pathErr{"readlink", rel, err}
	}
	if symlinkEscapes(rel, target) {
		return -1, fmt.Errorf("%q -> %q: %w", rel, target, errEscapeSymlink)
	}
	fd, err := a.t.inRoot(rel, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return -1, &pathErr{"open through symlink", rel, err}
	}
	return fd, nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, len(buf)*4)
	}
}

// implicitDir gives a directory created only because an entry below it
// needed it the metadata it has in the nearest parent layer (overlay and
// aufs formats), as overlayfs's copy-up would.
func (a *applier) implicitDir(dirfd int, comp, rel string) {
	for _, p := range a.parents {
		var st unix.Stat_t
		if err := unix.Fstatat(p.fd, rel, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return
		}
		// Resolution of rel in p is plain lstat: parents are trusted layer
		// directories given by the caller, not tar input.
		_ = unix.Fchownat(dirfd, comp, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
		if _, ok := a.dirs[rel]; !ok {
			a.dirs[rel] = dirMeta{mode: st.Mode & 0o7777, atime: st.Atim, mtime: st.Mtim}
		}
		return
	}
}

// entry applies one tar entry.
func (a *applier) entry(hdr *tar.Header) error {
	if len(hdr.Linkname) > maxNameLen {
		return fmt.Errorf("%w: link target longer than %d bytes", errBadHeader, maxNameLen)
	}
	if strings.IndexByte(hdr.Linkname, 0) >= 0 {
		return fmt.Errorf("%w: link target contains NUL", errBadHeader)
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > 1<<32-2 || hdr.Gid > 1<<32-2 {
		return fmt.Errorf("%w: uid/gid %d/%d out of range", errBadHeader, hdr.Uid, hdr.Gid)
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return a.record("", false)
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if plain := hdr.Typeflag == tar.TypeReg && !strings.HasPrefix(path.Base(rel), WhiteoutPrefix); !plain || a.pool.isPending(rel) {
		if err := a.pool.drain(); err != nil {
			return err
		}
	}
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: entry for the root is not a directory", errBadHeader)
		}
		a.dirs[""] = metaOf(hdr)
		return a.record(rel, false)
	}
	dir, base := splitName(rel)
	if strings.HasPrefix(base, WhiteoutPrefix) {
		done, err := a.whiteout(hdr, rel, dir, base)
		if err != nil || done {
			return err
		}
	}
	pfd, err := a.parent(dir, true)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse: // the reader turns TypeRegA into TypeReg
		err = a.regular(hdr, pfd, rel, base)
	case tar.TypeDir:
		err = a.directory(hdr, pfd, rel, base)
	case tar.TypeSymlink:
		err = a.symlink(hdr, pfd, rel, base)
	case tar.TypeLink:
		err = a.hardlink(hdr, pfd, rel, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = a.special(hdr, pfd, rel, base)
	default:
		return fmt.Errorf("%w %q", errUnsupported, hdr.Typeflag)
	}
	if err != nil {
		return err
	}
	a.mark(rel)
	return nil
}

// mark notes that this layer has an entry at rel.
func (a *applier) mark(rel string) {
	a.layer[rel] = struct{}{}
	for dir, _ := splitName(rel); dir != ""; dir, _ = splitName(dir) {
		if _, ok := a.above[dir]; ok {
			return
		}
		a.above[dir] = struct{}{}
	}
}

// record tells the tar-split recorder about an entry whose content (if
// any) was not stored as a file.
func (a *applier) record(rel string, _ bool) error {
	if a.rec == nil {
		return nil
	}
	return a.rec.entry(rel, 0, nil)
}

// replace makes room for rel (base in pfd): an existing entry is removed,
// unless both are directories. It reports whether a directory was kept.
func (a *applier) replace(pfd int, rel, base string, dir bool) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return false, nil
		}
		return false, &pathErr{"lstat", rel, err}
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if dir && isDir {
		return true, nil
	}
	// Pending files may be inside what goes away: let them land first.
	if err := a.pool.drain(); err != nil {
		return false, err
	}
	delete(a.planted, rel)
	if isDir || st.Mode&unix.S_IFMT == unix.S_IFLNK {
		a.stale = true
	}
	if _, err := removeAt(pfd, base); err != nil {
		return false, &pathErr{"remove", rel, err}
	}
	return false, nil
}

func metaOf(hdr *tar.Header) dirMeta {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return dirMeta{mode: uint32(hdr.Mode) & 0o7777, atime: timespec(at), mtime: timespec(hdr.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{}
	}
	return unix.NsecToTimespec(t.UnixNano())
}

// setTimes sets atime and mtime of base in pfd, not following symlinks.
func setTimes(pfd int, base string, hdr *tar.Header) error {
	m := metaOf(hdr)
	return unix.UtimesNanoAt(pfd, base, []unix.Timespec{m.atime, m.mtime}, unix.AT_SYMLINK_NOFOLLOW)
}

// xattrsOf returns the xattrs a header carries, overlayfs's own dropped.
func xattrsOf(hdr *tar.Header) [][2]string {
	var out [][2]string
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxXattrPrefix); ok && name != "" && !isDriverXattr(name) {
			out = append(out, [2]string{name, v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// setXattrs sets the header's xattrs through fd, or when fd < 0 on base
// in pfd without following it.
func setXattrs(fd, pfd int, base string, hdr *tar.Header) error {
	for _, kv := range xattrsOf(hdr) {
		var err error
		if fd >= 0 {
			err = unix.Fsetxattr(fd, kv[0], []byte(kv[1]), 0)
		} else {
			err = unix.Lsetxattr(procPath(pfd, base), kv[0], []byte(kv[1]), 0)
		}
		if err != nil {
			if kv[0] == "security.selinux" && (err == unix.ENOTSUP || err == unix.EOPNOTSUPP) {
				continue
			}
			return fmt.Errorf("set xattr %s: %w", kv[0], err)
		}
	}
	return nil
}

func (a *applier) regular(hdr *tar.Header, pfd int, rel, base string) error {
	if _, err := a.replace(pfd, rel, base, false); err != nil {
		return err
	}
	// Create with the final mode when the kernel will give exactly that
	// (no special bits, umask takes nothing away, no default ACL): one
	// metadata update less per file.
	mode := uint32(hdr.Mode) & 0o7777
	createMode, exact := uint32(0o600), false
	if um, ok := processUmask(); ok && pfd == a.cacheFd && !a.cacheACL && mode&0o7000 == 0 && mode&um == 0 {
		createMode, exact = mode, true
	}
	sparseTar := hdr.Typeflag == tar.TypeGNUSparse
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			sparseTar = true
		}
	}
	asFile := a.rec != nil && !sparseTar && a.rec.claim(rel)
	if asFile {
		a.rec.startContent()
	}
	if hdr.Size <= asyncMax && !sparseTar && pfd == a.cacheFd && a.cacheRef != nil && hdr.Typeflag == tar.TypeReg {
		return a.regularAsync(hdr, rel, base, createMode, exact, asFile)
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, createMode)
	if err != nil {
		return &pathErr{"create", rel, err}
	}
	defer unix.Close(fd)
	// Holes, of a sparse entry or of zeros in a plain one, are kept as
	// holes. (The tar reader expands sparse entries: the time is that of
	// the logical size; ctx bounds it.)
	if err := a.writeContent(fd, hdr.Size); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if err := a.setMeta(fd, pfd, rel, base, hdr, exact); err != nil {
		return err
	}
	if a.rec != nil {
		if asFile {
			return a.rec.endContent(rel, hdr.Size)
		}
		return a.rec.entry(rel, 0, nil)
	}
	return nil
}

// regularAsync reads the content of a small file and hands the writing
// to the pool.
func (a *applier) regularAsync(hdr *tar.Header, rel, base string, createMode uint32, exact, asFile bool) error {
	bufp := jobBufPool.Get().(*[]byte)
	data := (*bufp)[:hdr.Size]
	if _, err := io.ReadFull(a.tr, data); err != nil {
		jobBufPool.Put(bufp)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("write %s: %w", rel, err)
	}
	m := metaOf(hdr)
	a.pool.submit(&fileJob{
		dir: a.cacheRef.acquire(), name: hdr.Name, rel: rel, base: base,
		data: data, bufp: bufp,
		uid: hdr.Uid, gid: hdr.Gid,
		chown: hdr.Uid != a.euid || hdr.Gid != a.egid || a.cacheSetgid,
		mode:  uint32(hdr.Mode) & 0o7777, createMode: createMode, exact: exact,
		xattrs: xattrsOf(hdr), times: [2]unix.Timespec{m.atime, m.mtime},
	})
	if a.rec != nil {
		if asFile {
			return a.rec.endContent(rel, hdr.Size)
		}
		return a.rec.entry(rel, 0, nil)
	}
	return nil
}

// writeContent copies size bytes of the current entry into fd, leaving
// holes where whole blocks are zero.
func (a *applier) writeContent(fd int, size int64) error {
	var off int64
	holeAtEnd := false
	for off < size {
		n := int64(len(a.buf))
		if size-off < n {
			n = size - off
		}
		b := a.buf[:n]
		if _, err := io.ReadFull(a.tr, b); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if size > copyBufSize {
			if err := a.ctx.Err(); err != nil {
				return err
			}
			if int(n) == len(a.buf) && bytes.Equal(b, zeroBuf) {
				off += n
				holeAtEnd = true
				continue
			}
		}
		if size <= holeBlock {
			if err := writeAll(fd, b, off); err != nil {
				return err
			}
			off += n
			continue
		}
		// Write runs of non-zero blocks; skip zero blocks.
		start := -1
		for i := 0; i < len(b); i += holeBlock {
			end := min(i+holeBlock, len(b))
			zero := bytes.Equal(b[i:end], zeroBlock[:end-i])
			if !zero && start < 0 {
				start = i
			}
			if zero && start >= 0 {
				if err := writeAll(fd, b[start:i], off+int64(start)); err != nil {
					return err
				}
				start = -1
			}
			holeAtEnd = zero
		}
		if start >= 0 {
			if err := writeAll(fd, b[start:], off+int64(start)); err != nil {
				return err
			}
		}
		off += n
	}
	if holeAtEnd {
		return unix.Ftruncate(fd, size)
	}
	return nil
}

// writeData writes data (the whole file of size bytes) to fd, leaving
// holes for zero blocks.
func writeData(fd int, data []byte, size int64) error {
	if size <= holeBlock {
		return writeAll(fd, data, 0)
	}
	start, holeAtEnd := -1, false
	for i := 0; i < len(data); i += holeBlock {
		end := min(i+holeBlock, len(data))
		zero := bytes.Equal(data[i:end], zeroBlock[:end-i])
		if !zero && start < 0 {
			start = i
		}
		if zero && start >= 0 {
			if err := writeAll(fd, data[start:i], int64(start)); err != nil {
				return err
			}
			start = -1
		}
		holeAtEnd = zero
	}
	if start >= 0 {
		return writeAll(fd, data[start:], int64(start))
	}
	if holeAtEnd {
		return unix.Ftruncate(fd, size)
	}
	return nil
}

func writeAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return err
		}
		b = b[n:]
		off += int64(n)
	}
	return nil
}

// setMeta sets owner, mode, xattrs and times of a non-directory entry;
// fd is the open file or -1.
func (a *applier) setMeta(fd, pfd int, rel, base string, hdr *tar.Header, modeSet bool) error {
	var err error
	if fd >= 0 {
		// A file just created in the cached parent already has our
		// owner; skip the call when that is the owner wanted.
		if hdr.Uid != a.euid || hdr.Gid != a.egid || a.cacheSetgid || pfd != a.cacheFd {
			err = unix.Fchown(fd, hdr.Uid, hdr.Gid)
		}
	} else {
		err = unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return &pathErr{"chown", rel, err}
	}
	if hdr.Typeflag != tar.TypeSymlink && !modeSet {
		mode := uint32(hdr.Mode) & 0o7777
		if fd >= 0 {
			err = unix.Fchmod(fd, mode)
		} else {
			err = unix.Fchmodat(pfd, base, mode, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return &pathErr{"chmod", rel, err}
		}
	}
	if err := setXattrs(fd, pfd, base, hdr); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if err := setTimes(pfd, base, hdr); err != nil {
		return &pathErr{"set times", rel, err}
	}
	return nil
}

func (a *applier) directory(hdr *tar.Header, pfd int, rel, base string) error {
	kept, err := a.replace(pfd, rel, base, true)
	if err != nil {
		return err
	}
	if !kept {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return &pathErr{"mkdir", rel, err}
		}
	}
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &pathErr{"chown", rel, err}
	}
	if len(xattrsOf(hdr)) > 0 {
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &pathErr{"open", rel, err}
		}
		err = setXattrs(fd, pfd, base, hdr)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
	}
	a.dirs[rel] = metaOf(hdr)
	return a.record(rel, false)
}

func (a *applier) symlink(hdr *tar.Header, pfd int, rel, base string) error {
	if _, err := a.replace(pfd, rel, base, false); err != nil {
		return err
	}
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return &pathErr{"symlink", rel, err}
	}
	a.planted[rel] = struct{}{}
	if err := a.setMeta(-1, pfd, rel, base, hdr, false); err != nil {
		return err
	}
	return a.record(rel, false)
}

func (a *applier) special(hdr *tar.Header, pfd int, rel, base string) error {
	var mode uint32
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
		if hdr.Devmajor == 0 && hdr.Devminor == 0 && a.overlay() {
			return fmt.Errorf("%w: a 0/0 character device would be a whiteout in an overlay layer", errUnsupported)
		}
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	default:
		mode = unix.S_IFIFO
	}
	if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 1<<32-1 || hdr.Devminor > 1<<32-1 {
		return fmt.Errorf("%w: device number out of range", errBadHeader)
	}
	if _, err := a.replace(pfd, rel, base, false); err != nil {
		return err
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(pfd, base, mode|0o600, int(dev)); err != nil {
		return &pathErr{"mknod", rel, err}
	}
	if err := a.setMeta(-1, pfd, rel, base, hdr, false); err != nil {
		return err
	}
	return a.record(rel, false)
}

func (a *applier) overlay() bool {
	return a.opts.Format == FormatOverlay || a.opts.Format == FormatOverlayUser
}

func (a *applier) opaqueXattr() string {
	if a.opts.Format == FormatOverlayUser {
		return overlayOpaqueUser
	}
	return overlayOpaqueTrusted
}

// finishDirs sets the mode and times of directories, after everything
// below them was written.
func (a *applier) finishDirs() error {
	rels := make([]string, 0, len(a.dirs))
	for rel := range a.dirs {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		m := a.dirs[rel]
		fd, base := a.t.fd, "."
		if rel != "" {
			dir, b := splitName(rel)
			pfd, err := a.parent(dir, false)
			if err != nil {
				continue // replaced or removed later in the layer
			}
			fd, base = pfd, b
		}
		var st unix.Stat_t
		flags := unix.AT_SYMLINK_NOFOLLOW
		if err := unix.Fstatat(fd, base, &st, flags); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if err := unix.Fchmodat(fd, base, m.mode, flags); err != nil {
			return &pathErr{"chmod", "/" + rel, err}
		}
		if err := unix.UtimesNanoAt(fd, base, []unix.Timespec{m.atime, m.mtime}, flags); err != nil {
			return &pathErr{"set times", "/" + rel, err}
		}
	}
	return nil
}
