package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testenv"
	"github.com/unionstack/unionstack/internal/testimage"
)

// cliPath is the PATH unionctl runs with: the system directories only, so
// that neither the built binary nor anything of the test is found there.
const cliPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var (
	buildOnce sync.Once
	builtBin  string // the unionctl binary built for the CLI tests
	buildDir  string // its directory, removed by cleanupBinaries
	buildErr  error
)

// unionctlBin builds ./cmd/unionctl once per test run (in the module
// found with `go env GOMOD`) and returns the binary's path.
func unionctlBin(t testing.TB) string {
	t.Helper()
	testenv.NeedRoot(t)
	goBin := testenv.NeedCommand(t, "go")
	buildOnce.Do(func() {
		out, err := exec.Command(goBin, "env", "GOMOD").Output()
		gomod := strings.TrimSpace(string(out))
		if err != nil || gomod == "" || gomod == os.DevNull {
			buildErr = fmt.Errorf("go env GOMOD: %q, %v", gomod, err)
			return
		}
		if buildDir, buildErr = os.MkdirTemp("", "integration-unionctl-"); buildErr != nil {
			return
		}
		bin := filepath.Join(buildDir, "unionctl")
		cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/unionctl")
		cmd.Dir = filepath.Dir(gomod)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/unionctl: %v\n%s", err, out)
			return
		}
		builtBin = bin
		trackExe(bin)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// cleanupBinaries removes what unionctlBin built (called by TestMain).
func cleanupBinaries() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// cli runs the built unionctl with --driver and --root, PATH without it.
type cli struct {
	t      *testing.T
	bin    string
	driver string
	root   string
}

// run runs unionctl with the global flags and args and returns its
// stdout, stderr and exit code.
func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	all := append([]string{"--driver", c.driver, "--root", c.root}, args...)
	cmd := exec.Command(c.bin, all...)
	cmd.Env = cliEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run unionctl %v: %v", all, err)
	}
	return o.String(), e.String(), 0
}

// ok runs unionctl and fails the test unless it exits 0.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("unionctl --driver %s %s: exit %d\nstdout: %s\nstderr: %s", c.driver, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// okJSON runs unionctl and decodes its stdout into v.
func (c *cli) okJSON(v any, args ...string) {
	c.t.Helper()
	out := c.ok(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("unionctl %s: output is not the JSON expected: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// cliEnv is the environment of unionctl: ours with PATH replaced.
func cliEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return append(env, "PATH="+cliPath)
}

// driverStatus is one driver of `unionctl driver ls --json`.
type driverStatus struct {
	Name     string            `json:"name"`
	Usable   bool              `json:"usable"`
	Reason   string            `json:"reason"`
	Features map[string]string `json:"features"`
}

// TestCLIDriverLs checks that `unionctl driver ls` lists vfs, overlay and
// fuse, all usable here, with the binary not in PATH (the fuse driver's
// helper is the binary itself).
func TestCLIDriverLs(t *testing.T) {
	bin := unionctlBin(t)
	c := &cli{t: t, bin: bin, driver: "vfs", root: tempRoot(t)}
	var drivers []driverStatus
	c.okJSON(&drivers, "driver", "ls", "--json")
	for _, name := range driverNames {
		i := slices.IndexFunc(drivers, func(d driverStatus) bool {
			return d.Name == name
		})
		if i < 0 {
			t.Errorf("driver ls --json does not list %s: %+v", name, drivers)
			continue
		}
		if !drivers[i].Usable {
			t.Errorf("driver ls: %s not usable here: %s", name, drivers[i].Reason)
		}
		t.Logf("%s: usable=%v features=%v", name, drivers[i].Usable, drivers[i].Features)
	}
	if i := slices.IndexFunc(drivers, func(d driverStatus) bool {
		return d.Name == "fuse"
	}); i >= 0 && drivers[i].Features["helper"] != bin {
		t.Errorf("fuse driver's helper is %q, want the binary itself (%s)", drivers[i].Features["helper"], bin)
	}

	// The table says the same.
	table := c.ok("driver", "ls")
	for _, name := range driverNames {
		found := false
		for _, line := range strings.Split(table, "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == name {
				found = true
				if f[1] != "true" && f[1] != "yes" {
					t.Errorf("driver ls: %s shown as usable=%s:\n%s", name, f[1], table)
				}
			}
		}
		if !found {
			t.Errorf("driver ls does not list %s:\n%s", name, table)
		}
	}
}

// TestCLIImageLifecycle runs, per driver, image import of an OCI layout,
// image ls/inspect --json, image mount + read a file + image umount, layer
// diff, image export, image rm and prune, all through the built binary
// with it not in PATH.
func TestCLIImageLifecycle(t *testing.T) {
	bin := unionctlBin(t)
	layout, diffIDs, img := testimage.BusyboxImage(t)
	for _, name := range driverNames {
		t.Run(name, func(t *testing.T) {
			root := tempRoot(t)
			needDriver(t, name, filepath.Join(root, "probe"))
			c := &cli{t: t, bin: bin, driver: name, root: filepath.Join(root, "store")}

			out := c.ok("image", "import", layout)
			if !strings.Contains(out, string(img.ID)) || !strings.Contains(out, testimage.DefaultName) {
				t.Errorf("image import printed %q, want the id %s and name %s", out, img.ID, testimage.DefaultName)
			}

			var ls []struct {
				ID       digest.Digest   `json:"id"`
				Names    []string        `json:"names"`
				Layers   int             `json:"layers"`
				ChainIDs []digest.Digest `json:"chainIDs"`
			}
			c.okJSON(&ls, "image", "ls", "--json")
			if len(ls) != 1 || ls[0].ID != img.ID || !slices.Contains(ls[0].Names, testimage.DefaultName) || ls[0].Layers != len(diffIDs) {
				t.Fatalf("image ls --json: %+v; want one image %s named %s with %d layers", ls, img.ID, testimage.DefaultName, len(diffIDs))
			}
			if want := graph.ChainIDs(diffIDs); !slices.Equal(ls[0].ChainIDs, want) {
				t.Errorf("image ls --json chainIDs %v, want %v", ls[0].ChainIDs, want)
			}

			var inspect struct {
				ID     digest.Digest `json:"id"`
				Config struct {
					Entrypoint []string `json:"entrypoint"`
					WorkingDir string   `json:"workingDir"`
					User       string   `json:"user"`
				} `json:"config"`
				Layers []struct {
					ChainID digest.Digest `json:"chainID"`
					DiffID  digest.Digest `json:"diffID"`
				} `json:"layers"`
			}
			c.okJSON(&inspect, "image", "inspect", "--json", testimage.DefaultName)
			if inspect.ID != img.ID || !slices.Equal(inspect.Config.Entrypoint, testimage.RunConfig.Entrypoint) ||
				inspect.Config.WorkingDir != testimage.RunConfig.WorkingDir || inspect.Config.User != testimage.RunConfig.User {
				t.Errorf("image inspect --json: %+v; want id %s and the run config %+v", inspect, img.ID, testimage.RunConfig)
			}
			var gotDiffIDs []digest.Digest
			for _, l := range inspect.Layers {
				gotDiffIDs = append(gotDiffIDs, l.DiffID)
			}
			if !slices.Equal(gotDiffIDs, diffIDs) {
				t.Fatalf("image inspect --json layers have DiffIDs %v, want %v", gotDiffIDs, diffIDs)
			}

			mnt := filepath.Join(root, "mnt")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			c.ok("image", "mount", testimage.DefaultName, mnt)
			t.Cleanup(func() { c.run("image", "umount", mnt) })
			passwd, err := os.ReadFile(filepath.Join(mnt, "etc/passwd"))
			if err != nil || !strings.Contains(string(passwd), "user:x:1000:1000") {
				t.Errorf("read etc/passwd of the mounted image: %q, %v; want layer 2's version", passwd, err)
			}
			if _, err := os.Lstat(filepath.Join(mnt, "etc/motd")); !os.IsNotExist(err) {
				t.Errorf("etc/motd (whited out in layer 1) in the mounted image: lstat says %v", err)
			}
			c.ok("image", "umount", mnt)
			if left, _ := mountsBelow(mnt); len(left) > 0 {
				t.Errorf("image umount left %v mounted", left)
			}

			top := inspect.Layers[len(inspect.Layers)-1]
			diffFile := filepath.Join(root, "top.tar")
			c.ok("layer", "diff", string(top.ChainID), "-o", diffFile)
			if d := fileDigest(t, diffFile); d != top.DiffID {
				t.Errorf("layer diff of the top layer has digest %s, want its DiffID %s", d, top.DiffID)
			}

			exported := filepath.Join(root, "exported")
			c.ok("image", "export", testimage.DefaultName, exported)
			if d := exportedDiffIDs(t, exported); !slices.Equal(d, diffIDs) {
				t.Errorf("image export: layers with DiffIDs %v, want %v", d, diffIDs)
			}

			out = c.ok("image", "rm", testimage.DefaultName)
			if !strings.Contains(out, "removed image "+string(img.ID)) {
				t.Errorf("image rm printed %q", out)
			}
			c.ok("prune")
			c.okJSON(&ls, "image", "ls", "--json")
			var layers []json.RawMessage
			c.okJSON(&layers, "layer", "ls", "--json")
			if len(ls) != 0 || len(layers) != 0 {
				t.Errorf("after image rm and prune: %d images, %d layers left", len(ls), len(layers))
			}
		})
	}
}

// fileDigest is the sha256 digest of the file p.
func fileDigest(t testing.TB, p string) digest.Digest {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(fmt.Sprintf("sha256:%x", sha256.Sum256(data)))
}

// TestCLIMountSmoke mounts a two-branch union with `unionctl mount
// dirs=... MNT`, reads and writes through it and unmounts it with
// `unionctl umount`: the daemon must be gone afterwards.
func TestCLIMountSmoke(t *testing.T) {
	bin := unionctlBin(t)
	root := tempRoot(t)
	rw, ro, mnt := filepath.Join(root, "rw"), filepath.Join(root, "ro"), filepath.Join(root, "mnt")
	for _, d := range []string{rw, ro, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ro, "lower"), []byte("from ro\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, bin: bin, driver: "vfs", root: filepath.Join(root, "store")}
	c.ok("mount", "dirs="+rw+"=rw:"+ro+"=ro", mnt)
	t.Cleanup(func() {
		if left, _ := mountsBelow(mnt); len(left) > 0 {
			c.run("umount", mnt)
		}
	})
	if data, err := os.ReadFile(filepath.Join(mnt, "lower")); err != nil || string(data) != "from ro\n" {
		t.Errorf("read lower through the union: %q, %v", data, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "lower"), []byte("changed\n"), 0o644); err != nil {
		t.Errorf("write through the union: %v", err)
	}
	c.ok("umount", mnt)
	if left, _ := mountsBelow(mnt); len(left) > 0 {
		t.Errorf("unionctl umount left %v mounted", left)
	}
	if data, err := os.ReadFile(filepath.Join(rw, "lower")); err != nil || string(data) != "changed\n" {
		t.Errorf("copy-up: rw branch has %q, %v; want the changed file", data, err)
	}
	if data, _ := os.ReadFile(filepath.Join(ro, "lower")); string(data) != "from ro\n" {
		t.Errorf("ro branch changed: %q", data)
	}
}
