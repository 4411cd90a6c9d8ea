package archive

import (
	"context"
	"fmt"
	"hash"
	"hash/crc64"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"
)

// segmentFlush bounds the raw bytes buffered before they are written out
// as one tar-split segment.
const segmentFlush = 1 << 20

// splitRecorder sits between the decompressed stream and the tar reader
// and records tar-split metadata (the standard gzip'd JSON entries) in the
// same pass: bytes read while parsing headers and padding become segments,
// bytes read as a file's content are only checksummed, because Reassemble
// takes them back from the file on disk.
type splitRecorder struct {
	r       io.Reader
	zw      *gzip.Writer
	packer  storage.Packer
	seg     []byte
	content bool
	crc     hash.Hash64
	seen    map[string]struct{}
}

func newSplitRecorder(r io.Reader, w io.Writer) *splitRecorder {
	zw := gzip.NewWriter(w)
	return &splitRecorder{
		r: r, zw: zw, packer: storage.NewJSONPacker(zw),
		crc: crc64.New(storage.CRCTable), seen: map[string]struct{}{},
	}
}

// Read implements io.Reader for the tar reader.
func (s *splitRecorder) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		if s.content {
			s.crc.Write(p[:n])
		} else {
			s.seg = append(s.seg, p[:n]...)
			if len(s.seg) >= segmentFlush {
				if ferr := s.flush(); ferr != nil {
					return n, ferr
				}
			}
		}
	}
	return n, err
}

// flush writes the buffered raw bytes as a segment.
func (s *splitRecorder) flush() error {
	if len(s.seg) == 0 {
		return nil
	}
	_, err := s.packer.AddEntry(storage.Entry{Type: storage.SegmentType, Payload: s.seg})
	s.seg = s.seg[:0]
	return err
}

// claim reports whether rel may have its content stored as a file: the
// first entry of a name only (tar-split file names are unique).
func (s *splitRecorder) claim(rel string) bool {
	_, dup := s.seen[rel]
	return !dup
}

// startContent switches to checksumming the current entry's content.
func (s *splitRecorder) startContent() {
	s.content = true
	s.crc.Reset()
}

// endContent records the current entry as file rel of size bytes.
func (s *splitRecorder) endContent(rel string, size int64) error {
	s.content = false
	return s.entry(rel, size, s.crc.Sum(nil))
}

// entry records a file entry; a repeated name is left out (its bytes, if
// any, are in the segments).
func (s *splitRecorder) entry(rel string, size int64, sum []byte) error {
	if _, dup := s.seen[rel]; dup {
		return nil
	}
	s.seen[rel] = struct{}{}
	e := storage.Entry{Type: storage.FileType, Size: size, Payload: sum}
	e.SetName(rel)
	_, err := s.packer.AddEntry(e)
	return err
}

// close flushes the last segment and the gzip stream.
func (s *splitRecorder) close() error {
	if err := s.flush(); err != nil {
		return err
	}
	return s.zw.Close()
}

// reassemble implements Reassemble.
func reassemble(ctx context.Context, root string, meta io.Reader, w io.Writer) error {
	t, err := openTree(root)
	if err != nil {
		return fmt.Errorf("reassemble layer: %w", err)
	}
	defer t.close()
	zr, err := gzip.NewReader(meta)
	if err != nil {
		return fmt.Errorf("reassemble layer %s: tar-split metadata: %w", root, err)
	}
	defer zr.Close()
	fg := fileGetter{ctx: ctx, t: t}
	if err := asm.WriteOutputTarStream(fg, storage.NewJSONUnpacker(zr), w); err != nil {
		return fmt.Errorf("reassemble layer %s: %w", root, err)
	}
	return nil
}

// fileGetter opens recorded files strictly inside a tree.
type fileGetter struct {
	ctx context.Context
	t   *tree
}

func (g fileGetter) Get(name string) (io.ReadCloser, error) {
	if err := g.ctx.Err(); err != nil {
		return nil, err
	}
	rel, err := cleanName(name)
	if err != nil || rel == "" {
		return nil, fmt.Errorf("file %q: %w", name, errUnsafeName)
	}
	fd, err := g.t.inRoot(rel, unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		return nil, &pathErr{"open", rel, err}
	}
	return fdFile(fd, rel), nil
}
