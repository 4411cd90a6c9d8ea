package archive

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
)

// Compression is the compression of a layer stream.
type Compression int

// The compressions a layer may come in.
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
	Bzip2
	Xz
)

// ApplyOptions says how Apply writes a layer.
type ApplyOptions struct {
	// Format is how whiteouts and opaque directories are written into
	// root: FormatTree deletes what they name (root is a full tree),
	// FormatAUFS writes .wh. files, FormatOverlay(User) writes 0/0 char
	// devices and the opaque xattr.
	Format Format
	// Parents are the lower layer directories under root, nearest first,
	// for formats other than FormatTree: a hard link whose target is in a
	// lower layer is resolved there (the target is copied up first).
	Parents []string
	// TarSplit, when set, receives the metadata Reassemble needs to
	// reproduce the uncompressed tar byte for byte.
	TarSplit io.Writer
}

// ApplyResult is what Apply learned while unpacking.
type ApplyResult struct {
	DiffID      digest.Digest // sha256 of the uncompressed tar
	Size        int64         // bytes of the uncompressed tar
	Compression Compression   // as detected from the stream's magic bytes
}

// Apply unpacks the OCI layer read from r (plain, gzip or zstd, detected
// from the bytes) onto root, computing the DiffID in the same pass.
// Hostile entries are refused with an error naming the entry; nothing is
// ever written outside root.
//
// Entry names must be relative: absolute names and names with a ".."
// component are refused (Docker strips a leading "/"; we refuse it, as
// such a tar was not made for a layer). A symlink of a lower layer on the
// way to an entry is followed as the container would see it, but never
// out of root (openat2 RESOLVE_IN_ROOT); a symlink this same layer created,
// or one whose target climbs above root, is refused. Directory modes and
// times are set after their contents; until then directories stay
// writable, so after a failed Apply root can be removed.
func Apply(ctx context.Context, root string, r io.Reader, opts ApplyOptions) (ApplyResult, error) {
	return applyLayer(ctx, root, r, opts)
}

// Diff writes an uncompressed OCI layer tar of the changes from the tree
// lower ("" for none) to the tree upper into w and returns its DiffID.
// Files are compared by metadata only (type, mode, owner, size, mtime,
// device number, symlink target, xattrs); deletions become ".wh.NAME"
// entries, and every entry written is preceded by its parent directories.
func Diff(ctx context.Context, lower, upper string, w io.Writer) (digest.Digest, error) {
	return diffTrees(ctx, lower, upper, w)
}

// WriteLayer writes dir, a layer stored in format f (not FormatTree), as
// an uncompressed OCI layer tar into w and returns its DiffID.
// Whiteouts and opaque markers become aufs-style entries; the headers
// follow the same conventions as Diff's.
func WriteLayer(ctx context.Context, dir string, f Format, w io.Writer) (digest.Digest, error) {
	return writeLayer(ctx, dir, f, w)
}

// Reassemble writes into w the exact tar recorded by ApplyOptions.TarSplit,
// taking file contents from root (a tree that holds the layer's files).
// The metadata is gzip'd tar-split JSON (github.com/vbatts/tar-split).
// A regular file whose name appears twice in the tar cannot be
// reassembled (the file on disk holds only the last content): Reassemble
// then fails with a checksum error naming it.
func Reassemble(ctx context.Context, root string, meta io.Reader, w io.Writer) error {
	return reassemble(ctx, root, meta, w)
}

// DecompressStream detects the compression of r from its first bytes and
// returns a reader of the uncompressed stream. gzip, zstd, bzip2 and plain
// streams are read; xz is recognised and refused with
// ErrUnsupportedCompression.
func DecompressStream(r io.Reader) (io.ReadCloser, Compression, error) {
	return decompressStream(r)
}

// CompressStream returns a writer that compresses into w (Uncompressed,
// Gzip or Zstd); closing it flushes the compressed stream but does not
// close w.
func CompressStream(w io.Writer, c Compression) (io.WriteCloser, error) {
	return compressStream(w, c)
}
