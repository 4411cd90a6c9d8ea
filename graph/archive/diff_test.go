package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

func baseLayer(t testing.TB) []byte {
	return tarOf(t, append(allTypesTarEnts(),
		dirE("etc/", 0o755),
		fileE("etc/hosts", "127.0.0.1 localhost\n", 0o644),
		fileE("etc/motd", "hello\n", 0o644),
		fileE("etc/group", "root:x:0:\n", 0o644),
		dirE("var/", 0o755), dirE("var/cache/", 0o755), fileE("var/cache/a", "a", 0o644), fileE("var/cache/b", "b", 0o644),
		dirE("opt/", 0o755), dirE("opt/app/", 0o755), fileE("opt/app/bin", "bin", 0o755),
	)...)
}

// change makes a set of changes through the tree at root (a plain dir or
// a mounted overlay).
func change(t testing.TB, root string, withDirReplace bool) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(root, rel) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(p("etc/hosts"), []byte("127.0.0.1 localhost box\n"), 0o644))
	must(os.Remove(p("etc/motd")))
	must(os.Chmod(p("etc/group"), 0o600))
	must(os.Chown(p("etc/group"), 0, 42))
	must(os.MkdirAll(p("new/dir"), 0o750))
	must(os.WriteFile(p("new/dir/file"), []byte("new"), 0o640))
	must(os.Link(p("new/dir/file"), p("new/hardlink")))
	must(os.Symlink("../etc/hosts", p("new/sym")))
	must(unix.Mkfifo(p("new/fifo"), 0o644))
	must(unix.Mknod(p("new/tty"), unix.S_IFCHR|0o620, int(unix.Mkdev(5, 0))))
	must(unix.Setxattr(p("new/dir/file"), "security.capability", []byte(capV2), 0))
	must(unix.Setxattr(p("new/dir/file"), "user.a", []byte("1"), 0))
	must(os.RemoveAll(p("var/cache")))
	must(os.Chtimes(p("opt/app/bin"), time.Unix(1, 0), time.Unix(1700000000, 5)))
	if withDirReplace {
		must(os.RemoveAll(p("opt/app")))
		must(os.Mkdir(p("opt/app"), 0o755))
		must(os.WriteFile(p("opt/app/other"), []byte("o"), 0o644))
	}
	must(os.Chtimes(p("new/dir"), time.Unix(5, 0), time.Unix(1600000000, 0)))
}

func TestDiffApplyRoundTrip(t *testing.T) {
	testenv.NeedRoot(t)
	base := baseLayer(t)
	lower, upper, again := t.TempDir(), t.TempDir(), t.TempDir()
	for _, d := range []string{lower, upper, again} {
		apply(t, d, base, ApplyOptions{})
	}
	change(t, upper, true)

	var layer bytes.Buffer
	dgst, err := Diff(context.Background(), lower, upper, &layer)
	if err != nil {
		t.Fatal(err)
	}
	if dgst.String() != sha(layer.Bytes()) {
		t.Errorf("Diff returned %s for a tar of %s", dgst, sha(layer.Bytes()))
	}
	var layer2 bytes.Buffer
	if dgst2, _ := Diff(context.Background(), lower, upper, &layer2); dgst2 != dgst {
		t.Errorf("Diff is not deterministic: %s then %s", dgst, dgst2)
	}
	checkHeaders(t, layer.Bytes())
	res := apply(t, again, layer.Bytes(), ApplyOptions{})
	if res.DiffID != dgst {
		t.Errorf("apply DiffID %s, diff %s", res.DiffID, dgst)
	}
	if got, want := describe(t, again), describe(t, upper); got != want {
		t.Errorf("tree after diff+apply differs:\n got:\n%s\nwant:\n%s", got, want)
	}
	// From nothing: the whole tree.
	var full bytes.Buffer
	if _, err := Diff(context.Background(), "", upper, &full); err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	apply(t, scratch, full.Bytes(), ApplyOptions{})
	if got, want := describe(t, scratch), describe(t, upper); got != want {
		t.Errorf("tree from a full diff differs:\n got:\n%s\nwant:\n%s", got, want)
	}
}

// checkHeaders checks the header conventions: PAX, no names of users, no
// atime/ctime, hard links as link entries.
func checkHeaders(t *testing.T, b []byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	links := 0
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Uname != "" || h.Gname != "" || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: uname %q gname %q atime %v ctime %v", h.Name, h.Uname, h.Gname, h.AccessTime, h.ChangeTime)
		}
		if h.Typeflag == tar.TypeLink {
			links++
		}
		if strings.HasPrefix(h.Name, "/") || strings.HasPrefix(h.Name, "./") {
			t.Errorf("name %q", h.Name)
		}
	}
	if links == 0 {
		t.Errorf("no hard link entry in the diff")
	}
}

// TestWriteLayerOverlay changes files through a real overlayfs mount and
// checks that exporting the upper dir directly gives the same tar as
// diffing the mounted tree against the lower one, and that the layer
// applies to the same tree.
func TestWriteLayerOverlay(t *testing.T) {
	testenv.NeedRoot(t)
	for _, replace := range []bool{false, true} {
		name := "same-diffid"
		if replace {
			name = "opaque-dir"
		}
		t.Run(name, func(t *testing.T) {
			lower, upper := t.TempDir(), t.TempDir()
			apply(t, lower, baseLayer(t), ApplyOptions{})
			merged := mountOverlay(t, lower, upper)
			change(t, merged, replace)
			var viaDiff, viaUpper bytes.Buffer
			d1, err := Diff(context.Background(), lower, merged, &viaDiff)
			if err != nil {
				t.Fatal(err)
			}
			want := describe(t, merged)
			if err := unix.Unmount(merged, 0); err != nil {
				t.Fatal(err)
			}
			d2, err := WriteLayer(context.Background(), upper, FormatOverlay, &viaUpper)
			if err != nil {
				t.Fatal(err)
			}
			if !replace && d1 != d2 {
				t.Errorf("WriteLayer %s != Diff %s\n%s\n---\n%s", d2, d1, listTar(viaUpper.Bytes()), listTar(viaDiff.Bytes()))
			}
			// Both layers applied to the lower tree give the merged tree.
			for i, l := range [][]byte{viaDiff.Bytes(), viaUpper.Bytes()} {
				dst := t.TempDir()
				apply(t, dst, baseLayer(t), ApplyOptions{})
				apply(t, dst, l, ApplyOptions{})
				if got := describe(t, dst); got != want {
					t.Errorf("layer %d applied gives:\n%s\nwant:\n%s", i, got, want)
				}
			}
			// The aufs form of the same layer exports to the same tar.
			conv := t.TempDir()
			apply(t, conv, viaUpper.Bytes(), ApplyOptions{Format: FormatAUFS})
			var viaAUFS bytes.Buffer
			if d3, err := WriteLayer(context.Background(), conv, FormatAUFS, &viaAUFS); err != nil || d3 != d2 {
				t.Errorf("aufs export %s (%v) != overlay export %s\n%s\n---\n%s", d3, err, d2, listTar(viaAUFS.Bytes()), listTar(viaUpper.Bytes()))
			}
		})
	}
}

func listTar(b []byte) string {
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		out = append(out, h.Name+" "+string(h.Typeflag)+" "+h.ModTime.String())
	}
	return strings.Join(out, "\n")
}

func TestConvertWhiteouts(t *testing.T) {
	testenv.NeedRoot(t)
	lower, layer := t.TempDir(), t.TempDir()
	apply(t, lower, tarOf(t, dirE("d/", 0o755), fileE("d/gone", "g", 0o644), fileE("d/keep", "k", 0o644),
		dirE("o/", 0o755), fileE("o/old", "o", 0o644)), ApplyOptions{})
	tarAUFS := tarOf(t, dirE("d/", 0o755), fileE("d/.wh.gone", "", 0), dirE("o/", 0o755),
		fileE("o/.wh..wh..opq", "", 0), fileE("o/new", "n", 0o644))
	apply(t, layer, tarAUFS, ApplyOptions{Format: FormatAUFS})
	os.Mkdir(filepath.Join(layer, ".wh..wh.plnk"), 0o700)
	var before bytes.Buffer
	d0, _ := WriteLayer(context.Background(), layer, FormatAUFS, &before)

	if err := ConvertWhiteouts(layer, FormatAUFS, FormatOverlay); err != nil {
		t.Fatal(err)
	}
	merged := mountOverlay(t, lower, layer)
	for rel, exists := range map[string]bool{"d/gone": false, "d/keep": true, "o/old": false, "o/new": true, ".wh..wh.plnk": false, "d/.wh.gone": false} {
		if _, err := os.Lstat(filepath.Join(merged, rel)); (err == nil) != exists {
			t.Errorf("merged %s: exists=%v, want %v", rel, err == nil, exists)
		}
	}
	if err := unix.Unmount(merged, 0); err != nil {
		t.Fatal(err)
	}
	for _, step := range [][2]Format{{FormatOverlay, FormatOverlayUser}, {FormatOverlayUser, FormatAUFS}} {
		if err := ConvertWhiteouts(layer, step[0], step[1]); err != nil {
			t.Fatal(err)
		}
	}
	var after bytes.Buffer
	if d1, err := WriteLayer(context.Background(), layer, FormatAUFS, &after); err != nil || d1 != d0 {
		t.Errorf("aufs -> overlay -> overlay-user -> aufs changed the layer: %v\n%s\n---\n%s", err, listTar(after.Bytes()), listTar(before.Bytes()))
	}
	if err := ConvertWhiteouts(layer, FormatTree, FormatAUFS); err == nil {
		t.Error("converting a tree was accepted")
	}
}
