package graph

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dockerManifest is one entry of a docker-save archive's manifest.json.
type dockerManifest struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// ImportDockerArchive imports the images of a docker-save archive read
// from r: manifest.json (Config, RepoTags, Layers) with layers plain or
// compressed, in the classic ID/layer.tar form or the blobs/sha256/ form
// of newer Docker. A tar that holds only an OCI layout (index.json,
// oci-layout) is imported as one. A stream that cannot seek (a pipe) is
// first spooled to a scratch file under the Store's root.
func (s *Store) ImportDockerArchive(ctx context.Context, r io.Reader, opts ImportOptions) ([]Image, error) {
	const op = "import docker archive"
	f, ok := r.(*os.File)
	name := "stream"
	if ok {
		name = f.Name()
		if _, err := f.Seek(0, io.SeekCurrent); err != nil {
			ok = false
		}
	}
	if !ok {
		spool, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "archive-*.tar")
		if err != nil {
			return nil, Wrap(err, op, name)
		}
		defer func() {
			spool.Close()
			os.Remove(spool.Name())
		}()
		if _, err := io.Copy(spool, stCtxReader{ctx, r}); err != nil {
			return nil, Wrap(err, op, name)
		}
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return nil, Wrap(err, op, name)
		}
		f = spool
	}
	src, err := indexTar(f, name)
	if err != nil {
		return nil, Wrap(err, op, name)
	}
	var specs []imageSpec
	if _, _, err := src.open("manifest.json"); err == nil {
		specs, err = readDockerManifest(src)
		if err != nil {
			return nil, Wrap(err, op, name)
		}
	} else if _, _, err := src.open("oci-layout"); err == nil {
		specs, err = readOCILayout(src)
		if err != nil {
			return nil, Wrap(err, op, name)
		}
	} else {
		return nil, Errorf(ErrInvalidArgument, op, name, "neither a docker-save archive (no manifest.json) nor an OCI layout (no oci-layout)")
	}
	return s.importSpecs(ctx, src, specs, opts)
}

// readDockerManifest reads manifest.json of a docker-save archive and the
// configs it names.
func readDockerManifest(src *tarSource) ([]imageSpec, error) {
	data, err := stReadSmall(src, "manifest.json")
	if err != nil {
		return nil, err
	}
	var manifests []dockerManifest
	if err := json.Unmarshal(data, &manifests); err != nil {
		return nil, Errorf(ErrInvalidArgument, "read", "manifest.json", "%v", err)
	}
	if len(manifests) == 0 {
		return nil, Errorf(ErrInvalidArgument, "read", "manifest.json", "lists no image")
	}
	var specs []imageSpec
	for _, m := range manifests {
		cfgName := stTrimSlash(path.Clean(m.Config))
		cfg, err := stReadSmall(src, cfgName)
		if err != nil {
			return nil, err
		}
		if want := digestOfName(cfgName); want != "" {
			if got := digest.FromBytes(cfg); got != want {
				return nil, Errorf(ErrInvalidArgument, "read config", cfgName, "content has digest %s", got)
			}
		}
		sp := imageSpec{config: cfg, configMediaType: ocispec.MediaTypeImageConfig, names: m.RepoTags, where: "manifest.json config " + cfgName}
		for _, l := range m.Layers {
			ln := stTrimSlash(path.Clean(l))
			_, size, err := src.open(ln)
			if err != nil {
				return nil, err
			}
			sp.layers = append(sp.layers, layerBlob{name: ln, digest: digestOfName(ln), size: size})
		}
		specs = append(specs, sp)
	}
	return mergeSpecs(specs), nil
}

// digestOfName returns the sha256 digest a file name spells
// ("blobs/sha256/HEX", "HEX.json"), or "".
func digestOfName(name string) digest.Digest {
	base := path.Base(name)
	if strings.HasPrefix(name, "blobs/sha256/") {
		d := digest.NewDigestFromEncoded(digest.SHA256, base)
		if d.Validate() == nil {
			return d
		}
		return ""
	}
	if hexName, ok := strings.CutSuffix(base, ".json"); ok {
		d := digest.NewDigestFromEncoded(digest.SHA256, hexName)
		if d.Validate() == nil {
			return d
		}
	}
	return ""
}

// tarSource reads the files of a tar archive in place, by offset.
type tarSource struct {
	f       *os.File
	name    string
	entries map[string]tarEntry
	links   map[string]string // symlink or hard link name -> target name
}

// tarEntry is where a regular file's data lies in the archive.
type tarEntry struct{ off, size int64 }

// indexTar reads the headers of the tar f (from its current offset) and
// records where each file's data is.
func indexTar(f *os.File, name string) (*tarSource, error) {
	src := &tarSource{f: f, name: name, entries: map[string]tarEntry{}, links: map[string]string{}}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, Errorf(ErrInvalidArgument, "read archive", name, "not a readable tar: %v", err)
		}
		n := stTrimSlash(path.Clean("/" + hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeReg:
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, Wrap(err, "read archive", name)
			}
			src.entries[n] = tarEntry{off: off, size: hdr.Size}
		case tar.TypeSymlink:
			src.links[n] = stTrimSlash(path.Clean("/" + path.Join(path.Dir(n), hdr.Linkname)))
		case tar.TypeLink:
			src.links[n] = stTrimSlash(path.Clean("/" + hdr.Linkname))
		}
	}
	if len(src.entries) == 0 {
		return nil, Errorf(ErrInvalidArgument, "read archive", name, "holds no files")
	}
	return src, nil
}

func (t *tarSource) open(name string) (io.ReadCloser, int64, error) {
	n := name
	for i := 0; i < 16; i++ {
		if e, ok := t.entries[n]; ok {
			return io.NopCloser(io.NewSectionReader(t.f, e.off, e.size)), e.size, nil
		}
		target, ok := t.links[n]
		if !ok {
			break
		}
		n = target
	}
	return nil, 0, Errorf(ErrInvalidArgument, "read", name, "missing from archive %s", t.name)
}

func (t *tarSource) describe() string { return t.name }

// stCtxReader stops reading when ctx is done.
type stCtxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c stCtxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
