package archive

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"
)

var errTODO = errors.New("archive: not written yet")

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
func Apply(ctx context.Context, root string, r io.Reader, opts ApplyOptions) (ApplyResult, error) {
	return ApplyResult{}, errTODO
}

// Diff writes an uncompressed OCI layer tar of the changes from the tree
// lower ("" for none) to the tree upper into w and returns its DiffID.
func Diff(ctx context.Context, lower, upper string, w io.Writer) (digest.Digest, error) {
	return "", errTODO
}

// WriteLayer writes dir, a layer stored in format f (not FormatTree), as
// an uncompressed OCI layer tar into w and returns its DiffID.
func WriteLayer(ctx context.Context, dir string, f Format, w io.Writer) (digest.Digest, error) {
	return "", errTODO
}

// Reassemble writes into w the exact tar recorded by ApplyOptions.TarSplit,
// taking file contents from root (a tree that holds the layer's files).
func Reassemble(ctx context.Context, root string, meta io.Reader, w io.Writer) error {
	return errTODO
}

// DecompressStream detects the compression of r from its first bytes and
// returns a reader of the uncompressed stream.
func DecompressStream(r io.Reader) (io.ReadCloser, Compression, error) {
	return nil, 0, errTODO
}

// CompressStream returns a writer that compresses into w.
func CompressStream(w io.Writer, c Compression) (io.WriteCloser, error) {
	return nil, errTODO
}
