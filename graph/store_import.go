package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportOptions tune an import.
type ImportOptions struct {
	// Name names the imported image instead of the names the layout or
	// archive carries. An import of several images cannot take one.
	Name string
	// Progress, when set, is called as layer blobs are read with the
	// bytes read so far and the total (0 when not known yet).
	Progress func(done, total int64)
}

// Media types the Store accepts beyond the OCI ones.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerForeignGzip  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	// The OCI non-distributable layer types are deprecated but still read.
	mediaTypeNonDistributable = "application/vnd.oci.image.layer.nondistributable.v1.tar"
)

// maxJSONBlob bounds manifests, indexes and configs read into memory.
const maxJSONBlob = 16 << 20

// blobSource reads the files of an OCI layout or docker-save archive by
// their slash-separated names.
type blobSource interface {
	open(name string) (io.ReadCloser, int64, error)
	describe() string
}

// dirSource is an OCI layout directory.
type dirSource string

func (d dirSource) open(name string) (io.ReadCloser, int64, error) {
	f, err := os.Open(filepath.Join(string(d), filepath.FromSlash(name)))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, Errorf(ErrInvalidArgument, "read", name, "missing from %s", string(d))
		}
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, Errorf(ErrInvalidArgument, "read", name, "not a regular file in %s", string(d))
	}
	return f, fi.Size(), nil
}

func (d dirSource) describe() string { return string(d) }

// imageSpec is one image found in a layout or archive, before unpacking.
type imageSpec struct {
	config          []byte
	configMediaType string
	layers          []layerBlob
	names           []string
	where           string // for errors: the manifest it came from
}

// layerBlob is one layer blob of an imageSpec.
type layerBlob struct {
	name      string        // file name inside the source
	digest    digest.Digest // expected digest of the blob, "" if unknown
	size      int64         // expected size, -1 if unknown
	mediaType string        // "" when unknown (docker-save)
}

// Import imports the image(s) at path: an OCI image layout directory or a
// docker-save archive (a tar file, possibly an OCI layout archive).
func (s *Store) Import(ctx context.Context, path string, opts ImportOptions) ([]Image, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, Errorf(ErrNotFound, "import", path, "no such file or directory")
		}
		return nil, Wrap(err, "import", path)
	}
	if fi.IsDir() {
		return s.ImportOCILayout(ctx, path, opts)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, Wrap(err, "import", path)
	}
	defer f.Close()
	return s.ImportDockerArchive(ctx, f, opts)
}

// ImportOCILayout imports the images of the OCI image layout directory dir
// (oci-layout, index.json, blobs/): every manifest of the index, and of a
// nested index the manifest for this platform. Blob digests and sizes are
// checked while reading, every layer's DiffID against the config.
func (s *Store) ImportOCILayout(ctx context.Context, dir string, opts ImportOptions) ([]Image, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, Errorf(ErrNotFound, "import oci layout", dir, "no such directory")
		}
		return nil, Wrap(err, "import oci layout", dir)
	}
	if !fi.IsDir() {
		return nil, Errorf(ErrInvalidArgument, "import oci layout", dir, "not a directory")
	}
	specs, err := readOCILayout(dirSource(dir))
	if err != nil {
		return nil, Wrap(err, "import oci layout", dir)
	}
	return s.importSpecs(ctx, dirSource(dir), specs, opts)
}

// readOCILayout reads oci-layout and index.json of src and the manifests
// and configs they lead to.
func readOCILayout(src blobSource) ([]imageSpec, error) {
	data, err := stReadSmall(src, "oci-layout")
	if err != nil {
		return nil, err
	}
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(data, &layout); err != nil {
		return nil, Errorf(ErrInvalidArgument, "read", "oci-layout", "%v", err)
	}
	if layout.Version != ocispec.ImageLayoutVersion {
		return nil, Errorf(ErrNotSupported, "read", "oci-layout", "image layout version %q, want %q", layout.Version, ocispec.ImageLayoutVersion)
	}
	data, err = stReadSmall(src, "index.json")
	if err != nil {
		return nil, err
	}
	var index ocispec.Index
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, Errorf(ErrInvalidArgument, "read", "index.json", "%v", err)
	}
	var specs []imageSpec
	for _, desc := range index.Manifests {
		found, err := readDescriptor(src, desc, 0, refName(desc))
		if err != nil {
			return nil, err
		}
		specs = append(specs, found...)
	}
	if len(specs) == 0 {
		return nil, Errorf(ErrInvalidArgument, "read", "index.json", "no image manifest in %s", src.describe())
	}
	return mergeSpecs(specs), nil
}

// refName returns the image name a descriptor of index.json carries.
func refName(desc ocispec.Descriptor) string {
	if n := desc.Annotations["io.containerd.image.name"]; n != "" {
		return n
	}
	return desc.Annotations[ocispec.AnnotationRefName]
}

// mergeSpecs joins specs of the same manifest listed under several names.
func mergeSpecs(specs []imageSpec) []imageSpec {
	var out []imageSpec
	byConfig := map[digest.Digest]int{}
	for _, sp := range specs {
		id := digest.FromBytes(sp.config)
		if i, ok := byConfig[id]; ok {
			for _, n := range sp.names {
				if !stContainsString(out[i].names, n) {
					out[i].names = append(out[i].names, n)
				}
			}
			continue
		}
		byConfig[id] = len(out)
		out = append(out, sp)
	}
	return out
}

// readDescriptor follows desc (a manifest or an index) to image specs.
func readDescriptor(src blobSource, desc ocispec.Descriptor, depth int, name string) ([]imageSpec, error) {
	if depth > 4 {
		return nil, Errorf(ErrInvalidArgument, "read", string(desc.Digest), "indexes nested too deep")
	}
	switch desc.MediaType {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		sp, err := readManifest(src, desc)
		if err != nil {
			return nil, err
		}
		if name != "" {
			sp.names = []string{name}
		}
		return []imageSpec{sp}, nil
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		data, err := stReadBlob(src, desc)
		if err != nil {
			return nil, err
		}
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, Errorf(ErrInvalidArgument, "read index", string(desc.Digest), "%v", err)
		}
		var pick []ocispec.Descriptor
		for _, m := range idx.Manifests {
			if m.Platform == nil || (m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH) {
				pick = append(pick, m)
				break
			}
		}
		if len(pick) == 0 {
			return nil, Errorf(ErrNotFound, "read index", string(desc.Digest), "no manifest for linux/%s", runtime.GOARCH)
		}
		return readDescriptor(src, pick[0], depth+1, name)
	}
	return nil, nil // not an image (an artifact): skipped
}

// readManifest reads an image manifest and its config.
func readManifest(src blobSource, desc ocispec.Descriptor) (imageSpec, error) {
	data, err := stReadBlob(src, desc)
	if err != nil {
		return imageSpec{}, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return imageSpec{}, Errorf(ErrInvalidArgument, "read manifest", string(desc.Digest), "%v", err)
	}
	switch m.Config.MediaType {
	case ocispec.MediaTypeImageConfig, mediaTypeDockerConfig:
	default:
		return imageSpec{}, Errorf(ErrNotSupported, "read manifest", string(desc.Digest), "config media type %q is not an image config", m.Config.MediaType)
	}
	cfg, err := stReadBlob(src, m.Config)
	if err != nil {
		return imageSpec{}, err
	}
	sp := imageSpec{config: cfg, configMediaType: m.Config.MediaType, where: "manifest " + string(desc.Digest)}
	for _, l := range m.Layers {
		if err := checkLayerMediaType(l.MediaType); err != nil {
			return imageSpec{}, Wrap(err, "read manifest", string(l.Digest))
		}
		name, err := stBlobName(l.Digest)
		if err != nil {
			return imageSpec{}, err
		}
		sp.layers = append(sp.layers, layerBlob{name: name, digest: l.Digest, size: l.Size, mediaType: l.MediaType})
	}
	return sp, nil
}

// checkLayerMediaType accepts the layer media types Apply can read.
func checkLayerMediaType(mt string) error {
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
		mediaTypeNonDistributable, mediaTypeNonDistributable + "+gzip", mediaTypeNonDistributable + "+zstd",
		mediaTypeDockerLayer, mediaTypeDockerLayerGzip, mediaTypeDockerForeignGzip:
		return nil
	}
	return Errorf(ErrNotSupported, "check layer", mt, "unsupported layer media type")
}

// stBlobName is the file name of blob d in an OCI layout.
func stBlobName(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", Errorf(ErrInvalidArgument, "read blob", string(d), "bad digest: %v", err)
	}
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded(), nil
}

// stReadBlob reads the small blob desc and checks its size and digest.
func stReadBlob(src blobSource, desc ocispec.Descriptor) ([]byte, error) {
	name, err := stBlobName(desc.Digest)
	if err != nil {
		return nil, err
	}
	if desc.Size > maxJSONBlob || desc.Size < 0 {
		return nil, Errorf(ErrInvalidArgument, "read blob", string(desc.Digest), "size %d out of range", desc.Size)
	}
	data, err := stReadSmall(src, name)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != desc.Size {
		return nil, Errorf(ErrInvalidArgument, "read blob", string(desc.Digest), "size is %d, descriptor says %d", len(data), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return nil, Errorf(ErrInvalidArgument, "read blob", string(desc.Digest), "content has digest %s", got)
	}
	return data, nil
}

// stReadSmall reads the whole file name of src, refusing big ones.
func stReadSmall(src blobSource, name string) ([]byte, error) {
	rc, size, err := src.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > maxJSONBlob {
		return nil, Errorf(ErrInvalidArgument, "read", name, "%d bytes is too big for metadata", size)
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxJSONBlob+1))
	if err != nil {
		return nil, Wrap(err, "read", name)
	}
	return data, nil
}

// importSpecs unpacks and records the images specs read from src.
func (s *Store) importSpecs(ctx context.Context, src blobSource, specs []imageSpec, opts ImportOptions) ([]Image, error) {
	if opts.Name != "" {
		if len(specs) > 1 {
			return nil, Errorf(ErrInvalidArgument, "import", src.describe(), "holds %d images; cannot give them all the name %q", len(specs), opts.Name)
		}
		if err := validName(opts.Name); err != nil {
			return nil, err
		}
		specs[0].names = []string{opts.Name}
	}
	// Check every image before unpacking anything.
	var total int64
	diffIDs := make([][]digest.Digest, len(specs))
	for i, sp := range specs {
		d, err := s.checkSpec(sp)
		if err != nil {
			return nil, Wrap(err, "import", src.describe())
		}
		diffIDs[i] = d
		for _, l := range sp.layers {
			if l.size > 0 {
				total += l.size
			}
		}
	}
	prog := &stProgress{fn: opts.Progress, total: total}
	var out []Image
	for i, sp := range specs {
		img, err := s.importSpec(ctx, src, sp, diffIDs[i], prog)
		if err != nil {
			return out, Wrap(err, "import", src.describe())
		}
		out = append(out, img)
	}
	return out, nil
}

// checkSpec checks an image's config against its layers and the depth
// limit and returns the DiffIDs.
func (s *Store) checkSpec(sp imageSpec) ([]digest.Digest, error) {
	var cfg ocispec.Image
	if err := json.Unmarshal(sp.config, &cfg); err != nil {
		return nil, Errorf(ErrInvalidArgument, "check image", sp.where, "bad config: %v", err)
	}
	if cfg.RootFS.Type != "layers" {
		return nil, Errorf(ErrInvalidArgument, "check image", sp.where, "config rootfs type is %q, want \"layers\"", cfg.RootFS.Type)
	}
	if len(cfg.RootFS.DiffIDs) != len(sp.layers) {
		return nil, Errorf(ErrInvalidArgument, "check image", sp.where, "config lists %d diff_ids for %d layers", len(cfg.RootFS.DiffIDs), len(sp.layers))
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, Errorf(ErrInvalidArgument, "check image", sp.where, "bad diff_id %q: %v", d, err)
		}
	}
	if n := len(sp.layers); n > s.maxDepth {
		return nil, Errorf(ErrNotSupported, "check image", sp.where, "image has %d layers, more than the store's depth limit of %d", n, s.maxDepth)
	}
	return cfg.RootFS.DiffIDs, nil
}

// importSpec unpacks the layers of one image that are not yet present and
// records the image.
// Layers it created are removed again when it fails.
func (s *Store) importSpec(ctx context.Context, src blobSource, sp imageSpec, diffIDs []digest.Digest, prog *stProgress) (_ Image, err error) {
	chainIDs := ChainIDs(diffIDs)
	var created []digest.Digest
	s.pin(chainIDs...)
	defer func() {
		s.unpin(chainIDs...)
		if err != nil {
			s.dropLayers(context.WithoutCancel(ctx), created)
		}
	}()
	var parent digest.Digest
	for i, lb := range sp.layers {
		if err := ctx.Err(); err != nil {
			return Image{}, err
		}
		made, err := s.importLayerOnce(ctx, src, lb, parent, diffIDs[i], chainIDs[i], prog)
		if err != nil {
			return Image{}, Wrap(err, fmt.Sprintf("import layer %d of %d", i+1, len(sp.layers)), lb.name)
		}
		if made {
			created = append(created, chainIDs[i])
		}
		parent = chainIDs[i]
	}
	return s.recordImage(sp.config, sp.configMediaType, diffIDs, sp.names)
}

// dropLayers removes the layers created (base first) from the top down,
// as long as nothing references them.
func (s *Store) dropLayers(ctx context.Context, created []digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(created) - 1; i >= 0; i-- {
		if s.refs(created[i]) > 0 || s.removeLayerLocked(ctx, created[i]) != nil {
			return
		}
	}
}

// importLayerOnce imports the layer chainID unless it is present (or
// another import in this process makes it meanwhile); it says whether it
// made the layer.
func (s *Store) importLayerOnce(ctx context.Context, src blobSource, lb layerBlob, parent, diffID, chainID digest.Digest, prog *stProgress) (bool, error) {
	unlock := s.lockChain(chainID)
	defer unlock()
	if _, err := s.Layer(ctx, string(chainID)); err == nil {
		prog.add(lb.size)
		return false, nil
	}
	return true, s.importLayer(ctx, src, lb, parent, diffID, prog)
}

// importLayer unpacks one layer blob, checking its digest and size.
func (s *Store) importLayer(ctx context.Context, src blobSource, lb layerBlob, parent, diffID digest.Digest, prog *stProgress) error {
	rc, size, err := src.open(lb.name)
	if err != nil {
		return err
	}
	defer rc.Close()
	if lb.size >= 0 && size != lb.size {
		return Errorf(ErrInvalidArgument, "read blob", lb.name, "size is %d, descriptor says %d", size, lb.size)
	}
	vr := &stVerifyReader{r: rc, want: lb.digest, size: size, prog: prog}
	if lb.digest != "" {
		if !lb.digest.Algorithm().Available() {
			return Errorf(ErrNotSupported, "read blob", lb.name, "digest algorithm %q", lb.digest.Algorithm())
		}
		vr.h = lb.digest.Algorithm().Hash()
	}
	dgst := lb.digest
	if dgst == "" {
		dgst = diffID // a plain docker-save layer: the DiffID check covers it
	}
	_, err = s.unpackLayer(ctx, parent, diffID, vr, vr.check, layerSource{compressedDigest: dgst, compressedSize: size, mediaType: lb.mediaType})
	return err
}

// stVerifyReader checks the digest and size of what it reads and reports
// progress.
type stVerifyReader struct {
	r    io.Reader
	h    hash.Hash // nil: no digest to check
	want digest.Digest
	size int64
	n    int64
	prog *stProgress
}

func (v *stVerifyReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	if n > 0 {
		v.n += int64(n)
		if v.h != nil {
			v.h.Write(p[:n])
		}
		v.prog.add(int64(n))
	}
	return n, err
}

// check is called once the blob has been read to its end.
func (v *stVerifyReader) check() error {
	if v.n != v.size {
		return Errorf(ErrInvalidArgument, "read blob", string(v.want), "read %d bytes, expected %d", v.n, v.size)
	}
	if v.h != nil {
		if got := digest.NewDigest(v.want.Algorithm(), v.h); got != v.want {
			return Errorf(ErrInvalidArgument, "read blob", string(v.want), "content has digest %s", got)
		}
	}
	return nil
}

// stProgress adds up bytes read across the layers of an import.
type stProgress struct {
	fn          func(done, total int64)
	done, total int64
}

func (p *stProgress) add(n int64) {
	if p == nil || p.fn == nil || n <= 0 {
		return
	}
	p.done += n
	p.fn(p.done, p.total)
}

// stTrimSlash cleans a name read from a tar: no leading "./" or "/".
func stTrimSlash(name string) string {
	name = strings.TrimPrefix(name, "./")
	return strings.TrimLeft(name, "/")
}
