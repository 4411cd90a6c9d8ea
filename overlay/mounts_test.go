package overlay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testenv"
)

func TestViewOfOneLayerIsReadOnlyBind(t *testing.T) {
	d, _ := newTestDriver(t, nil)
	ctx := context.Background()
	commitLayer(t, d, "base", "", map[string]string{"etc/hostname": "base\n"})
	mounts, err := d.View(ctx, "v", "base")
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "bind" || !optionsHave(mounts[0].Options, "ro") || !optionsHave(mounts[0].Options, "rbind") {
		t.Fatalf("view of one layer: %+v, want one ro rbind mount", mounts)
	}
	mnt := mountTest(t, mounts)
	if got := readFile(t, filepath.Join(mnt, "etc/hostname")); got != "base\n" {
		t.Errorf("etc/hostname = %q", got)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into view: %v, want EROFS", err)
	}
}

func TestViewOfChainIsReadOnlyOverlay(t *testing.T) {
	d, _ := newTestDriver(t, nil)
	ctx := context.Background()
	commitLayer(t, d, "l0", "", map[string]string{"a": "0", "b": "0"})
	commitLayer(t, d, "l1", "l0", map[string]string{"b": "1"})
	mounts, err := d.View(ctx, "v", "l1")
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "overlay" || optionsHave(mounts[0].Options, "upperdir=") {
		t.Fatalf("view of two layers: %+v, want an overlay without upper dir", mounts)
	}
	mnt := mountTest(t, mounts)
	if a, b := readFile(t, filepath.Join(mnt, "a")), readFile(t, filepath.Join(mnt, "b")); a != "0" || b != "1" {
		t.Errorf("a=%q b=%q, want 0 and 1", a, b)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into view: %v, want EROFS", err)
	}
}

func TestActiveWithoutParentIsBind(t *testing.T) {
	d, _ := newTestDriver(t, nil)
	mounts, err := d.Prepare(context.Background(), "a", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "bind" || !optionsHave(mounts[0].Options, "rw") {
		t.Fatalf("active base: %+v, want one rw bind mount", mounts)
	}
	mnt := mountTest(t, mounts)
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(layerDir(t, d, "a"), "f")); got != "x" {
		t.Errorf("file in layer dir = %q", got)
	}
}

// A chain of MaxDepth (500) committed layers mounts under an active
// snapshot and as a view: files of layer 0 and layer 499 are visible, the
// top layer wins, and the options are lowerdir+ (they no longer fit a page).
// One layer more is refused.
func TestChainOfMaxDepth(t *testing.T) {
	if testing.Short() {
		t.Skip("500 layers: not in -short")
	}
	d, _ := newTestDriver(t, nil)
	ctx := context.Background()
	parent := ""
	for i := range MaxDepth {
		name := fmt.Sprintf("layer%d", i)
		commitLayer(t, d, name, parent, map[string]string{
			fmt.Sprintf("layers/%d", i): name,
			"top":                       name,
		})
		parent = name
	}
	mounts, err := d.Prepare(ctx, "container", parent)
	if err != nil {
		t.Fatalf("Prepare on %d layers: %v", MaxDepth, err)
	}
	if n := strings.Count(strings.Join(mounts[0].Options, ","), "lowerdir+="); n != MaxDepth {
		t.Errorf("%d lowerdir+ options, want %d", n, MaxDepth)
	}
	mnt := mountTest(t, mounts)
	for _, i := range []int{0, 1, 250, 499} {
		if got := readFile(t, filepath.Join(mnt, "layers", fmt.Sprint(i))); got != fmt.Sprintf("layer%d", i) {
			t.Errorf("layers/%d = %q", i, got)
		}
	}
	if got := readFile(t, filepath.Join(mnt, "top")); got != "layer499" {
		t.Errorf("top = %q, want layer499", got)
	}
	entries, err := os.ReadDir(filepath.Join(mnt, "layers"))
	if err != nil || len(entries) != MaxDepth {
		t.Errorf("layers/ has %d entries (%v), want %d", len(entries), err, MaxDepth)
	}
	if err := os.WriteFile(filepath.Join(mnt, "layers", "0"), []byte("changed"), 0o644); err != nil {
		t.Errorf("copy-up of a file from layer 0: %v", err)
	}

	view, err := d.View(ctx, "view", parent)
	if err != nil {
		t.Fatalf("View of %d layers: %v", MaxDepth, err)
	}
	vmnt := mountTest(t, view)
	if got := readFile(t, filepath.Join(vmnt, "layers", "0")); got != "layer0" {
		t.Errorf("view: layers/0 = %q", got)
	}
	if err := os.WriteFile(filepath.Join(vmnt, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into a view of %d layers: %v, want EROFS", MaxDepth, err)
	}

	commitLayer(t, d, "layer500", parent, map[string]string{"top": "layer500"})
	_, err = d.Prepare(ctx, "too-deep", "layer500")
	if !errors.Is(err, graph.ErrNotSupported) {
		t.Errorf("Prepare on %d layers: err %v, want ErrNotSupported", MaxDepth+1, err)
	}
	if _, err := d.Stat(ctx, "too-deep"); !errors.Is(err, graph.ErrNotFound) {
		t.Errorf("refused prepare left a snapshot: Stat err %v", err)
	}
}

// The kernel's own limit is what MaxDepth says: 500 lower layers mount
// through fsconfig, the 501st is refused.
func TestKernelStackLimit(t *testing.T) {
	testenv.NeedRoot(t)
	root := t.TempDir()
	var opts []string
	for i := range MaxDepth + 1 {
		dir := filepath.Join(root, "limit", fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, "lowerdir+="+dir)
	}
	mnt := t.TempDir()
	if err := mountOverlayFsopen(mnt, opts[:MaxDepth]); err != nil {
		t.Fatalf("%d lower layers: %v", MaxDepth, err)
	}
	if err := unmount(mnt); err != nil {
		t.Fatal(err)
	}
	if err := mountOverlayFsopen(mnt, opts); err == nil {
		unmount(mnt)
		t.Errorf("%d lower layers mounted; MaxDepth is out of date", MaxDepth+1)
	} else {
		t.Logf("%d lower layers: %v", MaxDepth+1, err)
	}
}

// Chains whose options fit a page use one lowerdir= option of short links.
func TestShortChainUsesLowerdirOption(t *testing.T) {
	d, root := newTestDriver(t, nil)
	parent := ""
	for i := range 10 {
		name := fmt.Sprintf("l%d", i)
		commitLayer(t, d, name, parent, map[string]string{"f": name})
		parent = name
	}
	mounts, err := d.Prepare(context.Background(), "c", parent)
	if err != nil {
		t.Fatal(err)
	}
	var lowerdir string
	for _, o := range mounts[0].Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			lowerdir = v
		}
	}
	lowers := strings.Split(lowerdir, ":")
	if len(lowers) != 10 {
		t.Fatalf("options %v: want one lowerdir= of 10 layers", mounts[0].Options)
	}
	for _, l := range lowers {
		if filepath.Dir(l) != filepath.Join(root, linkDirName) {
			t.Errorf("lower %s is not a short link under %s/%s", l, root, linkDirName)
		}
	}
	mnt := mountTest(t, mounts)
	if got := readFile(t, filepath.Join(mnt, "f")); got != "l9" {
		t.Errorf("f = %q, want l9", got)
	}
}

func TestRedirectDirOff(t *testing.T) {
	d, _ := newTestDriver(t, map[string]string{OptRedirectDir: "off"})
	commitLayer(t, d, "base", "", map[string]string{"dir/f": "x"})
	mounts, err := d.Prepare(context.Background(), "c", "base")
	if err != nil {
		t.Fatal(err)
	}
	if !optionsHave(mounts[0].Options, "redirect_dir=follow") {
		t.Errorf("options %v: want redirect_dir=follow", mounts[0].Options)
	}
	mnt := mountTest(t, mounts)
	err = os.Rename(filepath.Join(mnt, "dir"), filepath.Join(mnt, "moved"))
	if !errors.Is(err, unix.EXDEV) {
		t.Errorf("rename of a lower dir without redirect_dir: %v, want EXDEV", err)
	}
}
