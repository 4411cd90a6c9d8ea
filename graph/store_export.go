package graph

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/unionstack/unionstack/graph/archive"
	"github.com/unionstack/unionstack/internal/fsutil"
)

// ExportOptions tune an export.
type ExportOptions struct {
	// Compression of the layer blobs of an OCI layout: "gzip" (the
	// default), "zstd" or "none".
	Compression string
	// Progress, when set, is called as layer tars are written with the
	// uncompressed bytes so far and the total.
	Progress func(done, total int64)
}

// WriteLayerTar writes the uncompressed tar of the layer ref (a ChainID or
// unique prefix) into w, byte for byte the tar it was made from, and
// returns the layer.
func (s *Store) WriteLayerTar(ctx context.Context, ref string, w io.Writer) (Layer, error) {
	l, err := s.Layer(ctx, ref)
	if err != nil {
		return Layer{}, err
	}
	s.pin(l.ChainID)
	defer s.unpin(l.ChainID)
	return l, s.reassembleLayer(ctx, l, w, nil)
}

// reassembleLayer writes the exact tar of l into w from a view of its
// committed snapshot and its tar-split data, checking the DiffID.
func (s *Store) reassembleLayer(ctx context.Context, l Layer, w io.Writer, prog *stProgress) error {
	const op = "reassemble layer"
	meta, err := os.Open(s.tarSplitPath(l.ChainID))
	if err != nil {
		return Errorf(ErrFailedPrecondition, op, string(l.ChainID), "tar-split data missing: %v", err)
	}
	defer meta.Close()
	zr, err := gzip.NewReader(meta)
	if err != nil {
		return Errorf(ErrFailedPrecondition, op, string(l.ChainID), "tar-split data corrupt: %v", err)
	}
	key := stRandomKey("export-")
	mounts, err := s.d.View(ctx, key, string(l.ChainID), WithLabels(map[string]string{LabelExport: string(l.ChainID)}))
	if err != nil {
		return Wrap(err, op, string(l.ChainID))
	}
	defer s.d.Remove(context.WithoutCancel(ctx), key)
	h := digest.SHA256.Digester()
	cw := &stCountWriter{w: io.MultiWriter(w, h.Hash()), prog: prog}
	err = s.withTree(mounts, "export-", func(root string) error {
		return archive.Reassemble(ctx, root, zr, cw)
	})
	if err != nil {
		return Wrap(err, op, string(l.ChainID))
	}
	if got := h.Digest(); got != l.DiffID {
		return Errorf(ErrFailedPrecondition, op, string(l.ChainID), "reassembled tar has DiffID %s, the layer %s", got, l.DiffID)
	}
	return nil
}

// stCountWriter counts what passes through and reports progress.
type stCountWriter struct {
	w    io.Writer
	n    int64
	prog *stProgress
}

func (c *stCountWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.prog.add(int64(n))
	return n, err
}

// Export writes the image ref as an OCI image layout into dir (which must
// not exist or be empty): layer blobs reassembled from the stored tar-split
// data, so each DiffID equals the imported one, compressed as opts say; the
// config byte for byte as imported (the image id stays); a manifest; and
// index.json naming the image by its names. dir appears complete or not at
// all.
func (s *Store) Export(ctx context.Context, ref, dir string, opts ExportOptions) error {
	const op = "export"
	comp, mediaType, err := exportCompression(opts.Compression)
	if err != nil {
		return Wrap(err, op, ref)
	}
	img, layers, unpin, err := s.pinImageLayers(ctx, op, ref)
	if err != nil {
		return err
	}
	defer unpin()
	dir, err = filepath.Abs(dir)
	if err != nil {
		return Wrap(err, op, ref)
	}
	dirExists, err := checkEmptyDir(dir)
	if err != nil {
		return Wrap(err, op, dir)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return Wrap(err, op, dir)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.MkdirAll(filepath.Join(tmp, "blobs", "sha256"), 0o755); err != nil {
		return Wrap(err, op, dir)
	}
	var total int64
	for _, l := range layers {
		total += l.Size
	}
	prog := &stProgress{fn: opts.Progress, total: total}
	manifest := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, l := range layers {
		desc, err := s.writeLayerBlob(ctx, l, tmp, comp, prog)
		if err != nil {
			return Wrap(err, op, ref)
		}
		desc.MediaType = mediaType
		manifest.Layers = append(manifest.Layers, desc)
	}
	manifest.Config, err = writeBlobBytes(tmp, img.Config, ocispec.MediaTypeImageConfig)
	if err != nil {
		return Wrap(err, op, dir)
	}
	mdata, err := json.Marshal(manifest)
	if err != nil {
		return Wrap(err, op, ref)
	}
	mdesc, err := writeBlobBytes(tmp, mdata, ocispec.MediaTypeImageManifest)
	if err != nil {
		return Wrap(err, op, dir)
	}
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	if len(img.Names) == 0 {
		index.Manifests = append(index.Manifests, mdesc)
	}
	for _, n := range img.Names {
		d := mdesc
		d.Annotations = map[string]string{ocispec.AnnotationRefName: n, "io.containerd.image.name": n}
		index.Manifests = append(index.Manifests, d)
	}
	idata, err := json.Marshal(index)
	if err != nil {
		return Wrap(err, op, ref)
	}
	ldata, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	for name, data := range map[string][]byte{"index.json": idata, ocispec.ImageLayoutFile: ldata} {
		if err := fsutil.WriteFileSync(filepath.Join(tmp, name), data, 0o644); err != nil {
			return Wrap(err, op, dir)
		}
	}
	if dirExists {
		if err := os.Remove(dir); err != nil {
			return Wrap(err, op, dir)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Wrap(err, op, dir)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return Wrap(err, op, dir)
	}
	stSyncDir(filepath.Dir(dir))
	done = true
	return nil
}

// exportCompression maps an ExportOptions.Compression name.
func exportCompression(name string) (archive.Compression, string, error) {
	switch name {
	case "", "gzip":
		return archive.Gzip, ocispec.MediaTypeImageLayerGzip, nil
	case "zstd":
		return archive.Zstd, ocispec.MediaTypeImageLayerZstd, nil
	case "none":
		return archive.Uncompressed, ocispec.MediaTypeImageLayer, nil
	}
	return 0, "", Errorf(ErrInvalidArgument, "export", name, "unknown compression (want gzip, zstd or none)")
}

// checkEmptyDir says whether dir exists; it fails if dir is anything but an
// empty directory or absent.
func checkEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, Errorf(ErrAlreadyExists, "export", dir, "exists and is not a directory")
	}
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return false, Errorf(ErrAlreadyExists, "export", dir, "directory is not empty")
	}
	return true, nil
}

// writeLayerBlob writes layer l compressed with c as a blob of the layout
// under dir.
func (s *Store) writeLayerBlob(ctx context.Context, l Layer, dir string, c archive.Compression, prog *stProgress) (ocispec.Descriptor, error) {
	f, err := os.CreateTemp(filepath.Join(dir, "blobs", "sha256"), ".layer-")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer func() {
		f.Close()
		os.Remove(f.Name()) // gone after the rename anyway
	}()
	h := digest.SHA256.Digester()
	cw := &stCountWriter{w: io.MultiWriter(f, h.Hash())}
	var zw io.WriteCloser = stNopWriteCloser{cw}
	if c != archive.Uncompressed {
		if zw, err = archive.CompressStream(cw, c); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	if err := s.reassembleLayer(ctx, l, zw, prog); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := zw.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := f.Sync(); err != nil {
		return ocispec.Descriptor{}, err
	}
	d := h.Digest()
	if err := os.Rename(f.Name(), filepath.Join(dir, "blobs", "sha256", d.Encoded())); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{Digest: d, Size: cw.n}, nil
}

// stNopWriteCloser adds a Close that does nothing.
type stNopWriteCloser struct{ io.Writer }

func (stNopWriteCloser) Close() error { return nil }

// writeBlobBytes writes data as a blob of the layout under dir.
func writeBlobBytes(dir string, data []byte, mediaType string) (ocispec.Descriptor, error) {
	d := digest.FromBytes(data)
	if err := fsutil.WriteFileSync(filepath.Join(dir, "blobs", "sha256", d.Encoded()), data, 0o644); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, nil
}

// ExportDockerArchive writes the image ref into w as a docker-save archive
// in the classic form docker load reads: HEX/layer.tar (uncompressed, the
// exact imported tars), CONFIGHEX.json and manifest.json.
func (s *Store) ExportDockerArchive(ctx context.Context, ref string, w io.Writer, opts ExportOptions) error {
	const op = "export docker archive"
	img, layers, unpin, err := s.pinImageLayers(ctx, op, ref)
	if err != nil {
		return err
	}
	defer unpin()
	var total int64
	for _, l := range layers {
		total += l.Size
	}
	prog := &stProgress{fn: opts.Progress, total: total}
	tw := tar.NewWriter(w)
	now := time.Unix(0, 0).UTC()
	written := map[string]bool{}
	m := dockerManifest{Config: img.ID.Encoded() + ".json", RepoTags: img.Names}
	for _, l := range layers {
		name := l.DiffID.Encoded() + "/layer.tar"
		m.Layers = append(m.Layers, name)
		if written[name] {
			continue
		}
		written[name] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: l.DiffID.Encoded() + "/", Mode: 0o755, ModTime: now}); err != nil {
			return Wrap(err, op, ref)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: l.Size, ModTime: now}); err != nil {
			return Wrap(err, op, ref)
		}
		if err := s.reassembleLayer(ctx, l, tw, prog); err != nil {
			return Wrap(err, op, ref)
		}
	}
	mdata, err := json.Marshal([]dockerManifest{m})
	if err != nil {
		return Wrap(err, op, ref)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{m.Config, img.Config}, {"manifest.json", mdata}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: now}); err != nil {
			return Wrap(err, op, ref)
		}
		if _, err := tw.Write(f.data); err != nil {
			return Wrap(err, op, ref)
		}
	}
	return Wrap(tw.Close(), op, ref)
}

// pinImageLayers resolves ref to its image and layers and pins the layers
// so that nothing removes them until unpin is called (for export).
func (s *Store) pinImageLayers(ctx context.Context, op, ref string) (img Image, layers []Layer, unpin func(), err error) {
	img, err = s.Image(ctx, ref)
	if err != nil {
		return Image{}, nil, nil, err
	}
	s.pin(img.ChainIDs...)
	layers, err = s.ImageLayers(ctx, string(img.ID))
	if err != nil {
		s.unpin(img.ChainIDs...)
		return Image{}, nil, nil, Wrap(err, op, ref)
	}
	return img, layers, func() { s.unpin(img.ChainIDs...) }, nil
}
