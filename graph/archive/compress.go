package archive

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// ErrUnsupportedCompression is returned for a stream whose compression is
// recognised but cannot be read or written (xz).
var ErrUnsupportedCompression = errors.New("unsupported compression")

// zstdMaxWindow bounds the memory a hostile zstd frame can make the
// decoder allocate (zstd --long's ceiling).
const zstdMaxWindow = 128 << 20

// String names the compression.
func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "none"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Bzip2:
		return "bzip2"
	case Xz:
		return "xz"
	}
	return "unknown"
}

// DetectCompression names the compression whose magic bytes start b.
func DetectCompression(b []byte) Compression {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	case len(b) >= 4 && b[0]&0xf0 == 0x50 && b[1] == 0x2a && b[2] == 0x4d && b[3] == 0x18:
		return Zstd // a skippable frame first
	case bytes.HasPrefix(b, []byte("BZh")):
		return Bzip2
	case bytes.HasPrefix(b, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return Xz
	}
	return Uncompressed
}

func decompressStream(r io.Reader) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return nil, Uncompressed, fmt.Errorf("decompress: read magic: %w", err)
	}
	c := DetectCompression(magic)
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, c, fmt.Errorf("decompress gzip: %w", err)
		}
		return zr, c, nil
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(zstdMaxWindow))
		if err != nil {
			return nil, c, fmt.Errorf("decompress zstd: %w", err)
		}
		return zstdReadCloser{zr}, c, nil
	case Bzip2:
		return io.NopCloser(bzip2.NewReader(br)), c, nil
	case Xz:
		return nil, c, fmt.Errorf("decompress xz: %w", ErrUnsupportedCompression)
	}
	return io.NopCloser(br), c, nil
}

// zstdReadCloser makes a zstd decoder an io.ReadCloser.
type zstdReadCloser struct{ d *zstd.Decoder }

func (z zstdReadCloser) Read(p []byte) (int, error) { return z.d.Read(p) }

func (z zstdReadCloser) Close() error { z.d.Close(); return nil }

func compressStream(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case Uncompressed:
		return nopWriteCloser{w}, nil
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case Zstd:
		return zstd.NewWriter(w)
	}
	return nil, fmt.Errorf("compress %s: %w", c, ErrUnsupportedCompression)
}

// nopWriteCloser adds a Close that does nothing.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
