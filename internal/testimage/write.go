package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression is how a layer blob is compressed.
type Compression int

// The compressions of layer blobs.
const (
	Plain Compression = iota
	Gzip
	Zstd
)

// Compress returns data compressed with c.
func Compress(data []byte, c Compression) []byte {
	var buf bytes.Buffer
	switch c {
	case Plain:
		return data
	case Gzip:
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
	case Zstd:
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			panic(err)
		}
		zw.Write(data)
		zw.Close()
	}
	return buf.Bytes()
}

// MediaType returns the OCI layer media type for c.
func (c Compression) MediaType() string {
	switch c {
	case Gzip:
		return ocispec.MediaTypeImageLayerGzip
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return ocispec.MediaTypeImageLayer
}

// WriteOCILayout writes the image as an OCI image layout into dir: layer i
// compressed with comps[i % len(comps)] (gzip when none are given), and an
// index.json naming the image by im.Name.
func (im *Image) WriteOCILayout(dir string, comps ...Compression) error {
	if len(comps) == 0 {
		comps = []Compression{Gzip}
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for i, l := range im.Layers {
		c := comps[i%len(comps)]
		desc, err := writeBlob(dir, Compress(l.Tar, c), c.MediaType())
		if err != nil {
			return err
		}
		m.Layers = append(m.Layers, desc)
	}
	var err error
	if m.Config, err = writeBlob(dir, im.Config, ocispec.MediaTypeImageConfig); err != nil {
		return err
	}
	mdata, _ := json.Marshal(m)
	mdesc, err := writeBlob(dir, mdata, ocispec.MediaTypeImageManifest)
	if err != nil {
		return err
	}
	if im.Name != "" {
		mdesc.Annotations = map[string]string{ocispec.AnnotationRefName: im.Name}
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{mdesc}}
	idata, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), idata, 0o644); err != nil {
		return err
	}
	ldata, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	return os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), ldata, 0o644)
}

// BlobPath returns the path of blob d in the layout dir.
func BlobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

func writeBlob(dir string, data []byte, mediaType string) (ocispec.Descriptor, error) {
	d := digest.FromBytes(data)
	if err := os.WriteFile(BlobPath(dir, d), data, 0o644); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, nil
}

// DockerOptions say which docker-save form WriteDockerArchive writes.
type DockerOptions struct {
	// Blobs writes the form of Docker 25+: blobs/sha256/HEX for layers and
	// config, plus oci-layout and index.json. Otherwise the classic form:
	// ID/layer.tar, ID.json, repositories.
	Blobs bool
	// Compression of the layer files (docker save writes Plain).
	Compression Compression
}

// WriteDockerArchive writes the image into w as a docker-save tar archive.
func (im *Image) WriteDockerArchive(w io.Writer, opts DockerOptions) error {
	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: Epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	type manifest struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	m := manifest{}
	if im.Name != "" {
		m.RepoTags = []string{im.Name}
	}
	var ociLayers []ocispec.Descriptor
	for i, l := range im.Layers {
		data := Compress(l.Tar, opts.Compression)
		var name string
		if opts.Blobs {
			d := digest.FromBytes(data)
			name = "blobs/sha256/" + d.Encoded()
			ociLayers = append(ociLayers, ocispec.Descriptor{MediaType: opts.Compression.MediaType(), Digest: d, Size: int64(len(data))})
		} else {
			// A v1-style layer id, as old docker save wrote.
			id := digest.FromString(fmt.Sprintf("%d %s", i, l.DiffID)).Encoded()
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: id + "/", Mode: 0o755, ModTime: Epoch}); err != nil {
				return err
			}
			if err := add(id+"/VERSION", []byte("1.0")); err != nil {
				return err
			}
			name = id + "/layer.tar"
		}
		if err := add(name, data); err != nil {
			return err
		}
		m.Layers = append(m.Layers, name)
	}
	if opts.Blobs {
		m.Config = "blobs/sha256/" + im.ID.Encoded()
	} else {
		m.Config = im.ID.Encoded() + ".json"
	}
	if err := add(m.Config, im.Config); err != nil {
		return err
	}
	mdata, _ := json.Marshal([]manifest{m})
	if opts.Blobs {
		om := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: im.ID, Size: int64(len(im.Config))}, Layers: ociLayers}
		omdata, _ := json.Marshal(om)
		omd := digest.FromBytes(omdata)
		if err := add("blobs/sha256/"+omd.Encoded(), omdata); err != nil {
			return err
		}
		idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
			Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: omd, Size: int64(len(omdata))}}}
		idata, _ := json.Marshal(idx)
		if err := add("index.json", idata); err != nil {
			return err
		}
		ldata, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := add("oci-layout", ldata); err != nil {
			return err
		}
	} else if im.Name != "" && len(m.Layers) > 0 {
		repo, tag := splitRef(im.Name)
		rdata, _ := json.Marshal(map[string]map[string]string{repo: {tag: digest.FromString(m.Layers[len(m.Layers)-1]).Encoded()}})
		if err := add("repositories", rdata); err != nil {
			return err
		}
	}
	if err := add("manifest.json", mdata); err != nil {
		return err
	}
	return tw.Close()
}

// splitRef splits "repo:tag" (the tag after the last colon past the last
// slash), defaulting the tag to latest.
func splitRef(ref string) (string, string) {
	for i := len(ref) - 1; i >= 0 && ref[i] != '/'; i-- {
		if ref[i] == ':' {
			return ref[:i], ref[i+1:]
		}
	}
	return ref, "latest"
}

// ReplaceLayerBlob replaces the blob of layer i of the single image in the
// OCI layout dir with data (of the given media type, "" to keep it),
// rewriting the manifest and index.json so that every digest matches
// again: what is left wrong is only what data holds (a truncated stream,
// a tar whose DiffID the config does not list).
func ReplaceLayerBlob(dir string, i int, data []byte, mediaType string) error {
	var idx ocispec.Index
	if err := readJSON(filepath.Join(dir, "index.json"), &idx); err != nil {
		return err
	}
	if len(idx.Manifests) != 1 {
		return fmt.Errorf("index.json of %s lists %d manifests, want 1", dir, len(idx.Manifests))
	}
	var m ocispec.Manifest
	if err := readJSON(BlobPath(dir, idx.Manifests[0].Digest), &m); err != nil {
		return err
	}
	if i < 0 || i >= len(m.Layers) {
		return fmt.Errorf("layer %d out of range (%d layers)", i, len(m.Layers))
	}
	if mediaType == "" {
		mediaType = m.Layers[i].MediaType
	}
	desc, err := writeBlob(dir, data, mediaType)
	if err != nil {
		return err
	}
	m.Layers[i] = desc
	mdata, _ := json.Marshal(m)
	mdesc, err := writeBlob(dir, mdata, ocispec.MediaTypeImageManifest)
	if err != nil {
		return err
	}
	mdesc.Annotations = idx.Manifests[0].Annotations
	idx.Manifests[0] = mdesc
	idata, _ := json.Marshal(idx)
	return os.WriteFile(filepath.Join(dir, "index.json"), idata, 0o644)
}

// ReadLayout reads the single image of the OCI layout dir: its manifest,
// config bytes and each layer's uncompressed tar.
func ReadLayout(dir string) (m ocispec.Manifest, config []byte, layers [][]byte, err error) {
	var idx ocispec.Index
	if err = readJSON(filepath.Join(dir, "index.json"), &idx); err != nil {
		return
	}
	if len(idx.Manifests) == 0 {
		err = fmt.Errorf("index.json of %s lists no manifest", dir)
		return
	}
	if err = readJSON(BlobPath(dir, idx.Manifests[0].Digest), &m); err != nil {
		return
	}
	if config, err = os.ReadFile(BlobPath(dir, m.Config.Digest)); err != nil {
		return
	}
	for _, l := range m.Layers {
		var data []byte
		if data, err = os.ReadFile(BlobPath(dir, l.Digest)); err != nil {
			return
		}
		if got := digest.FromBytes(data); got != l.Digest {
			err = fmt.Errorf("blob %s has digest %s", l.Digest, got)
			return
		}
		if data, err = Decompress(data); err != nil {
			err = fmt.Errorf("blob %s: %w", l.Digest, err)
			return
		}
		layers = append(layers, data)
	}
	return
}

// Decompress undoes gzip or zstd compression (detected from the magic
// bytes); other data is returned as it is.
func Decompress(data []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return io.ReadAll(zr)
	}
	return data, nil
}

func readJSON(name string, v any) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
