package overlay

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testenv"
)

func TestProbeThisHost(t *testing.T) {
	testenv.NeedRoot(t)
	root := filepath.Join(t.TempDir(), "root")
	f, err := Probe(root)
	if err != nil {
		t.Fatalf("Probe: %v (features %v)", err, f)
	}
	t.Logf("probed features: %v", f)
	for k, want := range map[string]string{FeatureDType: "true", FeatureWhiteout: "true", FeatureMaxDepth: "500"} {
		if f[k] != want {
			t.Errorf("feature %s = %q, want %q", k, f[k], want)
		}
	}
	for _, k := range []string{FeatureRedirectDir, FeatureMetacopy, FeatureIndex, FeatureUserXattr, FeatureLowerdirAdd} {
		if v := f[k]; v != "on" && v != "off" {
			t.Errorf("feature %s = %q, want on or off", k, v)
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("probe left %d entries in root (first %s)", len(entries), entries[0].Name())
	}
}

func TestProbeThroughRegistry(t *testing.T) {
	testenv.NeedRoot(t)
	root := t.TempDir()
	var found bool
	for _, a := range graph.Available(root) {
		if a.Name == Name {
			found = true
			if !a.Usable || a.Features[FeatureDType] != "true" {
				t.Errorf("Available: %v", a)
			}
		}
	}
	if !found {
		t.Fatalf("overlay not in graph.Available")
	}
	d, err := graph.Open(Name, root, nil)
	if err != nil {
		t.Fatalf("graph.Open: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// An overlay cannot be the upper filesystem of another overlay: the probe
// must say so (overlayfs refuses to create whiteouts in its merged tree).
func TestProbeRefusesOverlayBackingFS(t *testing.T) {
	testenv.NeedRoot(t)
	base := t.TempDir()
	l, u, w, m := filepath.Join(base, "l"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
	for _, d := range []string{l, u, w, m} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := mountOverlay(m, "lowerdir="+l+",upperdir="+u+",workdir="+w); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmount(m) })
	root := filepath.Join(m, "root")
	f, err := Probe(root)
	if !errors.Is(err, graph.ErrNotSupported) || !strings.Contains(err.Error(), "whiteout") {
		t.Fatalf("Probe on overlay: err %v, want ErrNotSupported naming whiteouts", err)
	}
	if f[FeatureBackingFS] != "overlay" {
		t.Errorf("backing_fs = %q, want overlay", f[FeatureBackingFS])
	}
	if _, err := New(root, nil); !errors.Is(err, graph.ErrNotSupported) {
		t.Errorf("New on overlay: err %v, want ErrNotSupported", err)
	}
}

// The probe works on xfs (made with ftype=1, the default; this kernel
// refuses the v4 format that ftype=0 needs, so the refusal of xfs without
// d_type is tested through its verdict below).
func TestProbeXFS(t *testing.T) {
	testenv.NeedRoot(t)
	img := testenv.MakeImage(t, "mkfs.xfs", 320<<20, "-q", "-f")
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.LoopMount(t, img, mnt)
	f, err := Probe(filepath.Join(mnt, "root"))
	if err != nil {
		t.Fatalf("Probe on xfs: %v", err)
	}
	if f[FeatureBackingFS] != "xfs" || f[FeatureDType] != "true" {
		t.Errorf("Probe on xfs: features %v", f)
	}
}

func TestNoDTypeVerdict(t *testing.T) {
	err := noDTypeError("xfs")
	if !errors.Is(err, graph.ErrNotSupported) || !strings.Contains(err.Error(), "ftype=1") {
		t.Errorf("xfs without d_type: %v", err)
	}
	if err := noDTypeError("nfs"); !errors.Is(err, graph.ErrNotSupported) || !strings.Contains(err.Error(), "nfs") {
		t.Errorf("nfs without d_type: %v", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	testenv.NeedRoot(t)
	for _, tc := range []struct {
		name    string
		root    string
		options map[string]string
	}{
		{"unknown option", t.TempDir(), map[string]string{"overlay.metacopy": "on"}},
		{"bad redirect value", t.TempDir(), map[string]string{OptRedirectDir: "maybe"}},
		{"colon in root", filepath.Join(t.TempDir(), "a:b"), nil},
		{"comma in root", filepath.Join(t.TempDir(), "a,b"), nil},
	} {
		_, err := New(tc.root, tc.options)
		if !errors.Is(err, graph.ErrInvalidArgument) {
			t.Errorf("%s: err %v, want ErrInvalidArgument", tc.name, err)
		}
	}
}
