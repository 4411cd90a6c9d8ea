// Package testimage builds container images for tests: a multi-layer image
// from Debian's busybox-static with every kind of change a layer can hold
// (a file changed, files and a directory deleted by whiteouts, an opaque
// directory, a hard link, symlinks, a fifo, xattrs, owners and modes), and
// writes images as OCI image layouts and docker-save archives. It also
// unpacks an image the independent way, with GNU tar and whiteouts applied
// by hand, and compares two trees, so tests can check what a driver
// unpacked. Its layers are built with archive/tar, not graph/archive, so
// they test that package rather than mirror it.
package testimage

import (
	"encoding/json"
	"os"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/unionstack/unionstack/internal/testenv"
)

// BusyboxPath is where Debian's busybox-static installs the binary.
const BusyboxPath = "/bin/busybox"

// DefaultName is the name the busybox test image carries.
const DefaultName = "unionstack.test/busybox:latest"

// Layer is one layer of a test image.
type Layer struct {
	Tar    []byte        // the uncompressed layer tar
	DiffID digest.Digest // sha256 of Tar
}

// Image is a test image: layers (base first) and a config.
type Image struct {
	Name   string
	Layers []Layer
	Config []byte        // the config JSON
	ID     digest.Digest // digest of Config, the image id
}

// DiffIDs returns the layers' DiffIDs, base first.
func (im *Image) DiffIDs() []digest.Digest {
	out := make([]digest.Digest, len(im.Layers))
	for i, l := range im.Layers {
		out[i] = l.DiffID
	}
	return out
}

// RunConfig is the run-time config of the busybox test image.
var RunConfig = ocispec.ImageConfig{
	Entrypoint: []string{"/bin/sh", "-c"},
	Cmd:        []string{"echo hello from unionstack"},
	Env:        []string{"PATH=/bin", "GREETING=hi"},
	WorkingDir: "/home/user",
	User:       "1000:1000",
	Labels:     map[string]string{"org.unionstack.test": "busybox"},
}

// NewImage makes an image named name of layers with run-time config rc.
func NewImage(name string, layers []Layer, rc ocispec.ImageConfig) *Image {
	created := Epoch
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   rc,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
	}
	for i, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: "testimage layer " + string(rune('0'+i%10))})
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err)
	}
	return &Image{Name: name, Layers: layers, Config: data, ID: digest.FromBytes(data)}
}

// Busybox returns the three-layer busybox test image. It needs
// busybox-static installed (skips, or fails under UNIONSTACK_REQUIRE_ALL=1).
//
// Layer 0: bin/busybox and symlinks to it, etc/ files (one with an xattr),
// opt/data/ with files and a subdirectory, var/cache/old/, tmp/ (sticky).
// Layer 1: etc/hostname changed (new xattr), etc/motd deleted, opt/data
// made opaque with one new file, a hard link pair and a setuid file owned
// by 1000:1000, an absolute symlink, a fifo.
// Layer 2: var/cache/old deleted (a whole directory), bin/echo deleted (a
// symlink), etc/passwd changed, home/user/ (0700, 1000:1000) added.
func Busybox(t testing.TB) *Image {
	t.Helper()
	bb, err := os.ReadFile(BusyboxPath)
	testenv.Need(t, err == nil, "busybox-static not installed ("+BusyboxPath+")")
	return NewImage(DefaultName, BusyboxLayers(bb), RunConfig)
}

// BusyboxLayers builds the layers of the busybox test image around the
// busybox binary bb.
func BusyboxLayers(bb []byte) []Layer {
	user := Entry{UID: 1000, GID: 1000}
	l0 := NewTarBuilder().
		Dir("bin", 0o755).
		File("bin/busybox", 0o755, bb).
		Symlink("bin/sh", "busybox").
		Symlink("bin/ls", "busybox").
		Symlink("bin/cat", "busybox").
		Symlink("bin/echo", "busybox").
		Dir("etc", 0o755).
		File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")).
		File("etc/group", 0o644, []byte("root:x:0:\n")).
		File("etc/hostname", 0o644, []byte("base\n"), Entry{Xattrs: map[string]string{"user.origin": "layer0"}}).
		File("etc/motd", 0o644, []byte("welcome to the base layer\n")).
		Dir("opt", 0o755).
		Dir("opt/data", 0o755).
		File("opt/data/a", 0o644, []byte("a from layer 0\n")).
		File("opt/data/b", 0o600, []byte("b from layer 0\n")).
		Dir("opt/data/sub", 0o750).
		File("opt/data/sub/c", 0o644, []byte("c from layer 0\n")).
		Dir("tmp", 0o1777).
		Dir("var", 0o755).
		Dir("var/cache", 0o755).
		Dir("var/cache/old", 0o755).
		File("var/cache/old/x", 0o644, []byte("stale\n")).
		Layer()
	l1 := NewTarBuilder().
		Dir("etc", 0o755).
		File("etc/hostname", 0o644, []byte("layer1\n"), Entry{Xattrs: map[string]string{"user.origin": "layer1", "user.extra": "yes"}}).
		Whiteout("etc/motd").
		Symlink("etc/localtime", "/usr/share/zoneinfo/UTC").
		Dir("opt", 0o755).
		Dir("opt/data", 0o755).
		Opaque("opt/data").
		File("opt/data/new", 0o644, []byte("only file after the opaque layer\n")).
		Dir("usr", 0o755).
		Dir("usr/share", 0o755).
		Dir("usr/share/doc", 0o755).
		File("usr/share/doc/readme", 0o644, []byte("hard linked twice\n"), user).
		Hardlink("usr/share/doc/readme.link", "usr/share/doc/readme", user).
		Dir("usr/bin", 0o755).
		File("usr/bin/tool", 0o4755, []byte("#!/bin/sh\necho tool\n"), Entry{Xattrs: map[string]string{"user.tool": "setuid"}}).
		Dir("run", 0o755).
		Fifo("run/fifo", 0o600).
		Layer()
	l2 := NewTarBuilder().
		Dir("bin", 0o755).
		Whiteout("bin/echo").
		Dir("etc", 0o755).
		File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")).
		Dir("var", 0o755).
		Dir("var/cache", 0o755).
		Whiteout("var/cache/old").
		Dir("home", 0o755).
		Dir("home/user", 0o700, user).
		File("home/user/.profile", 0o644, []byte("export PS1='$ '\n"), user).
		Layer()
	return []Layer{l0, l1, l2}
}

// BusyboxImage writes the busybox test image as an OCI layout under a
// fresh t.TempDir(), layers alternately gzip and zstd compressed, and
// returns the layout directory, the DiffIDs and the image.
func BusyboxImage(t testing.TB) (layoutDir string, diffIDs []digest.Digest, img *Image) {
	t.Helper()
	img = Busybox(t)
	layoutDir = t.TempDir()
	if err := img.WriteOCILayout(layoutDir, Gzip, Zstd); err != nil {
		t.Fatalf("write OCI layout: %v", err)
	}
	return layoutDir, img.DiffIDs(), img
}

// BusyboxDockerArchive writes the busybox test image as a classic
// docker-save archive (plain layers) into a fresh t.TempDir() and returns
// its path and the image.
func BusyboxDockerArchive(t testing.TB) (path string, img *Image) {
	t.Helper()
	img = Busybox(t)
	path = t.TempDir() + "/busybox.tar"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := img.WriteDockerArchive(f, DockerOptions{}); err != nil {
		t.Fatalf("write docker archive: %v", err)
	}
	return path, img
}
