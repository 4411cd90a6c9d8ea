package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testenv"
	"github.com/unionstack/unionstack/internal/testimage"
)

// storeCLI runs a freshly built unionctl against a scratch --root.
type storeCLI struct {
	t    *testing.T
	bin  string
	root string
}

// newStoreCLI builds unionctl into a scratch directory.
func newStoreCLI(t *testing.T) *storeCLI {
	t.Helper()
	testenv.NeedRoot(t)
	goBin := testenv.NeedCommand(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "unionctl")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return &storeCLI{t: t, bin: bin, root: filepath.Join(dir, "root")}
}

// run runs unionctl --root ROOT args... with stdin from in (nil: none).
func (c *storeCLI) runIn(in []byte, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, append([]string{"--root", c.root}, args...)...)
	if in != nil {
		cmd.Stdin = bytes.NewReader(in)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return o.String(), e.String(), ee.ExitCode()
		}
		c.t.Fatalf("run %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

// ok runs unionctl and fails the test unless it exits 0 with nothing on
// stderr (no progress bar when stderr is not a terminal).
func (c *storeCLI) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.runIn(nil, args...)
	if code != 0 || errOut != "" {
		c.t.Fatalf("unionctl %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

// code runs unionctl and checks its exit code and that stderr says why.
func (c *storeCLI) code(want int, args ...string) string {
	c.t.Helper()
	_, errOut, code := c.runIn(nil, args...)
	if code != want {
		c.t.Errorf("unionctl %v: exit %d, want %d (stderr: %s)", args, code, want, errOut)
	}
	if !strings.HasPrefix(errOut, "unionctl: ") {
		c.t.Errorf("unionctl %v: stderr %q does not explain the error", args, errOut)
	}
	return errOut
}

func TestImageCLI(t *testing.T) {
	c := newStoreCLI(t)
	layout, diffIDs, img := testimage.BusyboxImage(t)
	archivePath, _ := testimage.BusyboxDockerArchive(t)
	name := testimage.DefaultName

	out := c.ok("image", "import", layout)
	if !strings.Contains(out, string(img.ID)) || !strings.Contains(out, name) {
		t.Errorf("import printed %q", out)
	}
	archive, err := os.ReadFile(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := c.runIn(archive, "image", "import", "--name", "piped:1", "-"); code != 0 || errOut != "" {
		t.Fatalf("import from stdin: %d %s %s", code, out, errOut)
	}

	var ls []struct {
		ID     digest.Digest `json:"id"`
		Names  []string      `json:"names"`
		Layers int           `json:"layers"`
	}
	if err := json.Unmarshal([]byte(c.ok("image", "ls", "--json")), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].ID != img.ID || ls[0].Layers != 3 || !slices.Equal(ls[0].Names, []string{name, "piped:1"}) {
		t.Errorf("image ls --json = %+v", ls)
	}
	if text := c.ok("image", "ls"); !strings.Contains(text, name) || !strings.Contains(text, "piped:1") || !strings.Contains(text, img.ID.Encoded()[:12]) {
		t.Errorf("image ls:\n%s", text)
	}

	var insp struct {
		ID     digest.Digest `json:"id"`
		Config struct {
			Entrypoint []string `json:"entrypoint"`
			Cmd        []string `json:"cmd"`
			Env        []string `json:"env"`
			WorkingDir string   `json:"workingDir"`
			User       string   `json:"user"`
		} `json:"config"`
		Layers []struct {
			DiffID  digest.Digest `json:"diffID"`
			ChainID digest.Digest `json:"chainID"`
			Size    int64         `json:"size"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(c.ok("image", "inspect", "--json", "piped:1")), &insp); err != nil {
		t.Fatal(err)
	}
	chain := graph.ChainIDs(diffIDs)
	if insp.ID != img.ID || !slices.Equal(insp.Config.Entrypoint, testimage.RunConfig.Entrypoint) ||
		!slices.Equal(insp.Config.Cmd, testimage.RunConfig.Cmd) || !slices.Equal(insp.Config.Env, testimage.RunConfig.Env) ||
		insp.Config.WorkingDir != "/home/user" || insp.Config.User != "1000:1000" || len(insp.Layers) != 3 {
		t.Errorf("image inspect --json = %+v", insp)
	}
	for i, l := range insp.Layers {
		if l.DiffID != diffIDs[i] || l.ChainID != chain[i] || l.Size != int64(len(img.Layers[i].Tar)) {
			t.Errorf("inspect layer %d = %+v", i, l)
		}
	}
	if text := c.ok("image", "inspect", name); !strings.Contains(text, "WorkingDir:") || !strings.Contains(text, string(diffIDs[2])) {
		t.Errorf("image inspect:\n%s", text)
	}

	// Export reproduces the layers byte for byte.
	exp := filepath.Join(t.TempDir(), "export")
	c.ok("image", "export", name, exp)
	_, cfg, layers, err := testimage.ReadLayout(exp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cfg, img.Config) {
		t.Errorf("exported config differs")
	}
	for i, l := range layers {
		if !bytes.Equal(l, img.Layers[i].Tar) {
			t.Errorf("exported layer %d differs", i)
		}
	}
	dockerOut := filepath.Join(t.TempDir(), "out.tar")
	c.ok("image", "export", "--format", "docker", name, dockerOut)
	if fi, err := os.Stat(dockerOut); err != nil || fi.Size() == 0 {
		t.Errorf("docker export: %v", err)
	}

	// Mount a view, look inside, unmount.
	mnt := t.TempDir()
	c.ok("image", "mount", name, mnt)
	mounted := true
	t.Cleanup(func() {
		if mounted {
			graph.UnmountAll(mnt)
		}
	})
	if data, err := os.ReadFile(filepath.Join(mnt, "etc/hostname")); err != nil || string(data) != "layer1\n" {
		t.Errorf("mounted etc/hostname = %q, %v", data, err)
	}
	c.code(1, "image", "rm", string(img.ID)) // in use by the view
	c.ok("image", "umount", mnt)
	mounted = false
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Errorf("mount dir not empty after umount")
	}

	// Layers.
	var lls []struct {
		ChainID  digest.Digest `json:"chainID"`
		DiffID   digest.Digest `json:"diffID"`
		RefCount int           `json:"refCount"`
	}
	if err := json.Unmarshal([]byte(c.ok("layer", "ls", "--json")), &lls); err != nil {
		t.Fatal(err)
	}
	if len(lls) != 3 || lls[0].ChainID != chain[0] || lls[2].DiffID != diffIDs[2] || lls[2].RefCount != 1 {
		t.Errorf("layer ls --json = %+v", lls)
	}
	tarOut := filepath.Join(t.TempDir(), "l1.tar")
	c.ok("layer", "diff", chain[1].Encoded()[:16], "-o", tarOut)
	if data, _ := os.ReadFile(tarOut); !bytes.Equal(data, img.Layers[1].Tar) {
		t.Errorf("layer diff -o is not the layer's tar")
	}
	if data := c.ok("layer", "diff", string(chain[0])); data != string(img.Layers[0].Tar) {
		t.Errorf("layer diff to a pipe is not the layer's tar")
	}
	c.code(1, "layer", "rm", string(chain[1])) // a parent
	if text := c.ok("layer", "ls"); !strings.Contains(text, chain[2].Encoded()[:12]) {
		t.Errorf("layer ls:\n%s", text)
	}

	// Remove: a name, then the image with its layers; prune finds nothing.
	if out := c.ok("image", "rm", "piped:1"); !strings.Contains(out, "untagged") {
		t.Errorf("image rm of a second name: %q", out)
	}
	out = c.ok("image", "rm", name)
	if strings.Count(out, "removed layer") != 3 {
		t.Errorf("image rm: %q", out)
	}
	if out := c.ok("layer", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("layers left: %s", out)
	}
	c.ok("image", "import", layout)
	c.ok("image", "rm", "--force", string(img.ID))
	if out := c.ok("prune"); out != "" {
		t.Errorf("prune after rm: %q", out)
	}
}

func TestImageCLIErrors(t *testing.T) {
	c := newStoreCLI(t)
	layout, _, _ := testimage.BusyboxImage(t)
	c.ok("image", "import", "--name", "one:1", layout)
	// Usage errors: exit 2.
	c.code(2, "image", "import")
	c.code(2, "image", "ls", "extra")
	c.code(2, "image", "ls", "--bogus")
	c.code(2, "image", "export", "one:1", t.TempDir(), "--compression", "lz4")
	c.code(2, "image", "export", "one:1", t.TempDir(), "--format", "zip")
	c.code(2, "image", "nosuchcommand")
	c.code(2, "layer", "nosuchcommand")
	c.code(2, "--driver", "nosuchdriver", "image", "ls")
	c.code(2, "image", "import", "--name", "bad name", layout)
	// Not found: exit 3.
	c.code(3, "image", "inspect", "nosuch:image")
	c.code(3, "image", "rm", "nosuch:image")
	c.code(3, "image", "export", "nosuch:image", filepath.Join(t.TempDir(), "x"))
	c.code(3, "image", "import", filepath.Join(t.TempDir(), "missing"))
	c.code(3, "image", "umount", t.TempDir())
	c.code(3, "layer", "rm", "sha256:"+strings.Repeat("0", 64))
	c.code(3, "layer", "diff", "nosuch", "-o", filepath.Join(t.TempDir(), "x.tar"))
	// Other failures: exit 1.
	notEmpty := t.TempDir()
	os.WriteFile(filepath.Join(notEmpty, "f"), nil, 0o644)
	c.code(1, "image", "export", "one:1", notEmpty)
	c.code(1, "layer", "rm", func() string {
		var ls []struct {
			ChainID string `json:"chainID"`
		}
		json.Unmarshal([]byte(c.ok("layer", "ls", "--json")), &ls)
		return ls[len(ls)-1].ChainID
	}())

	// driver ls lists vfs as usable.
	var drivers []struct {
		Name   string `json:"name"`
		Usable bool   `json:"usable"`
	}
	if err := json.Unmarshal([]byte(c.ok("driver", "ls", "--json")), &drivers); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(drivers, func(d struct {
		Name   string `json:"name"`
		Usable bool   `json:"usable"`
	}) bool {
		return d.Name == "vfs" && d.Usable
	}) {
		t.Errorf("driver ls --json = %+v", drivers)
	}
	if text := c.ok("driver", "ls"); !strings.Contains(text, "vfs") {
		t.Errorf("driver ls:\n%s", text)
	}
}
