package graph

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

// mountAllForTest runs MountAll and unmounts target when the test ends.
func mountAllForTest(t *testing.T, mounts []Mount, target string) {
	t.Helper()
	if err := MountAll(mounts, target); err != nil {
		t.Fatalf("MountAll: %v", err)
	}
	t.Cleanup(func() {
		if err := UnmountAll(target); err != nil {
			t.Errorf("UnmountAll(%s): %v", target, err)
		}
	})
}

// mountsBelowForTest lists the mount points at dir and below, from the
// kernel's mount table.
func mountsBelowForTest(t *testing.T, dir string) []string {
	t.Helper()
	real, err := resolveMountPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := mountsUnder(real)
	if err != nil {
		t.Fatal(err)
	}
	var mps []string
	for _, mi := range infos {
		mps = append(mps, mi.MountPoint)
	}
	return mps
}

func writeFileForTest(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantFileForTest(t *testing.T, path, data string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || string(got) != data {
		t.Errorf("%s = %q, %v; want %q", path, got, err, data)
	}
}

func wantMounted(t *testing.T, path string, want bool) {
	t.Helper()
	got, err := IsMountPoint(path)
	if err != nil || got != want {
		t.Errorf("IsMountPoint(%s) = %v, %v; want %v", path, got, err, want)
	}
}

func TestMountBind(t *testing.T) {
	testenv.NeedRoot(t)
	src := t.TempDir()
	writeFileForTest(t, filepath.Join(src, "f"), "data")

	for _, opts := range [][]string{{"rbind", "ro"}, {"ro"}, {"bind", "ro", "nosuid", "nodev"}} {
		t.Run(strings.Join(opts, ","), func(t *testing.T) {
			tgt := t.TempDir()
			mountAllForTest(t, []Mount{{Type: "bind", Source: src, Options: opts}}, tgt)
			wantMounted(t, tgt, true)
			wantFileForTest(t, filepath.Join(tgt, "f"), "data")
			err := os.WriteFile(filepath.Join(tgt, "new"), nil, 0o644)
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("write into a read-only bind mount: %v, want EROFS", err)
			}
			if err := UnmountAll(tgt); err != nil {
				t.Fatal(err)
			}
			wantMounted(t, tgt, false)
		})
	}
	t.Run("rw", func(t *testing.T) {
		tgt := t.TempDir()
		mountAllForTest(t, []Mount{{Type: "bind", Source: src, Options: []string{"rbind", "rw"}}}, tgt)
		writeFileForTest(t, filepath.Join(tgt, "new"), "x")
		wantFileForTest(t, filepath.Join(src, "new"), "x")
	})
	// The source stays writable after a read-only bind of it.
	writeFileForTest(t, filepath.Join(src, "after"), "y")
}

func TestMountOverlayData(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	lower, upper, work, tgt := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "mnt")
	for _, d := range []string{upper, work, tgt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFileForTest(t, filepath.Join(lower, "a"), "lower")
	mountAllForTest(t, []Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work, "nosuid",
	}}}, tgt)
	wantFileForTest(t, filepath.Join(tgt, "a"), "lower")
	writeFileForTest(t, filepath.Join(tgt, "b"), "upper")
	wantFileForTest(t, filepath.Join(upper, "b"), "upper")
	if fstype := fsTypeForTest(t, tgt); fstype != "overlay" {
		t.Errorf("mounted %s, want overlay", fstype)
	}
}

// TestMountOverlayFsopen mounts 200-layer overlays: with lowerdir+ options
// and with a lowerdir= string longer than a page. Both take the fsopen path.
func TestMountOverlayFsopen(t *testing.T) {
	testenv.NeedRoot(t)
	const n = 200
	dir := t.TempDir()
	layers := make([]string, n) // top first, as overlayfs lists them
	for i := range n {
		layers[i] = filepath.Join(dir, "layers", fmt.Sprintf("layer-with-a-longish-name-%03d", i))
		writeFileForTest(t, filepath.Join(layers[i], fmt.Sprintf("only-%d", i)), strconv.Itoa(i))
		writeFileForTest(t, filepath.Join(layers[i], "shadowed"), strconv.Itoa(i))
	}
	writeFileForTest(t, filepath.Join(layers[n-1], "bottom"), "from the bottom")

	plus := func() []string {
		var o []string
		for _, l := range layers {
			o = append(o, "lowerdir+="+l)
		}
		return o
	}
	colon := "lowerdir=" + strings.Join(layers, ":")
	if len(colon) <= overlayDataLimit {
		t.Fatalf("test lowerdir string is only %d bytes", len(colon))
	}
	cases := []struct {
		name string
		opts []string
		ro   bool
	}{
		{"lowerdir+", plus(), false},
		{"long lowerdir", []string{colon}, false},
		{"read-only lowerdir+", append(plus(), "ro"), true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tgt := filepath.Join(dir, fmt.Sprintf("mnt%d", i))
			opts := c.opts
			if !c.ro {
				upper, work := filepath.Join(dir, fmt.Sprintf("upper%d", i)), filepath.Join(dir, fmt.Sprintf("work%d", i))
				for _, d := range []string{upper, work} {
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				opts = append(opts, "upperdir="+upper, "workdir="+work)
			}
			if err := os.Mkdir(tgt, 0o755); err != nil {
				t.Fatal(err)
			}
			mountAllForTest(t, []Mount{{Type: "overlay", Source: "overlay", Options: opts}}, tgt)
			wantFileForTest(t, filepath.Join(tgt, "bottom"), "from the bottom")
			wantFileForTest(t, filepath.Join(tgt, "shadowed"), "0")
			wantFileForTest(t, filepath.Join(tgt, fmt.Sprintf("only-%d", n/2)), strconv.Itoa(n/2))
			err := os.WriteFile(filepath.Join(tgt, "new"), nil, 0o644)
			if c.ro && !errors.Is(err, syscall.EROFS) {
				t.Errorf("write into a read-only overlay: %v, want EROFS", err)
			}
			if !c.ro && err != nil {
				t.Errorf("write into the overlay: %v", err)
			}
		})
	}
	t.Run("layer path longer than fsconfig takes", func(t *testing.T) {
		long := filepath.Join(dir, "long")
		for len(long) < 300 {
			long = filepath.Join(long, strings.Repeat("d", 50))
		}
		writeFileForTest(t, filepath.Join(long, "deep"), "deep")
		tgt := filepath.Join(dir, "mnt-long")
		if err := os.Mkdir(tgt, 0o755); err != nil {
			t.Fatal(err)
		}
		mountAllForTest(t, []Mount{{Type: "overlay", Options: []string{"lowerdir+=" + long, "lowerdir+=" + layers[0]}}}, tgt)
		wantFileForTest(t, filepath.Join(tgt, "deep"), "deep")
		wantFileForTest(t, filepath.Join(tgt, "only-0"), "0")
	})
	t.Run("error names the kernel's reason", func(t *testing.T) {
		tgt := filepath.Join(dir, "bad")
		if err := os.Mkdir(tgt, 0o755); err != nil {
			t.Fatal(err)
		}
		err := MountAll([]Mount{{Type: "overlay", Options: []string{"lowerdir+=" + filepath.Join(dir, "missing")}}}, tgt)
		if err == nil {
			_ = UnmountAll(tgt)
			t.Fatal("overlay on a missing layer mounted")
		}
		if !strings.Contains(err.Error(), "missing") {
			t.Errorf("error %q does not name the missing layer", err)
		}
		wantMounted(t, tgt, false)
	})
}

func TestMountBlockImage(t *testing.T) {
	testenv.NeedRoot(t)
	_, err := os.Stat("/dev/loop-control")
	testenv.Need(t, err == nil, "loop devices (/dev/loop-control)")
	for _, c := range []struct {
		fstype, mkfs string
		size         int64
		args         []string
	}{
		{"ext4", "mkfs.ext4", 32 << 20, []string{"-q", "-F"}},
		{"xfs", "mkfs.xfs", 300 << 20, []string{"-q", "-f"}},
	} {
		t.Run(c.fstype, func(t *testing.T) {
			img := testenv.MakeImage(t, c.mkfs, c.size, c.args...)
			tgt := filepath.Join(t.TempDir(), "mnt")
			if err := os.Mkdir(tgt, 0o755); err != nil {
				t.Fatal(err)
			}
			mountAllForTest(t, []Mount{{Type: c.fstype, Source: img}}, tgt)
			if got := fsTypeForTest(t, tgt); got != c.fstype {
				t.Errorf("mounted %s, want %s", got, c.fstype)
			}
			loop := sourceForTest(t, tgt)
			if !strings.HasPrefix(loop, "/dev/loop") {
				t.Errorf("mounted from %q, want a loop device", loop)
			}
			writeFileForTest(t, filepath.Join(tgt, "kept"), "on disk")
			if err := UnmountAll(tgt); err != nil {
				t.Fatal(err)
			}
			waitLoopDetached(t, loop)

			mountAllForTest(t, []Mount{{Type: c.fstype, Source: img, Options: []string{"ro", "noexec"}}}, tgt)
			wantFileForTest(t, filepath.Join(tgt, "kept"), "on disk")
			if err := os.WriteFile(filepath.Join(tgt, "new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
				t.Errorf("write into a read-only %s: %v, want EROFS", c.fstype, err)
			}
			loop = sourceForTest(t, tgt)
			if err := UnmountAll(tgt); err != nil {
				t.Fatal(err)
			}
			waitLoopDetached(t, loop)
		})
	}
}

// TestMountBlockDevice mounts a filesystem from a block device as it is,
// without a loop device of its own.
func TestMountBlockDevice(t *testing.T) {
	testenv.NeedRoot(t)
	_, err := os.Stat("/dev/loop-control")
	testenv.Need(t, err == nil, "loop devices (/dev/loop-control)")
	img := testenv.MakeImage(t, "mkfs.ext4", 32<<20, "-q", "-F")
	tgt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(tgt, 0o755); err != nil {
		t.Fatal(err)
	}
	dev, err := attachLoop(img, false)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: this one after the unmount.
	t.Cleanup(func() {
		dev.Close()
		waitLoopDetached(t, dev.Name())
	})
	mountAllForTest(t, []Mount{{Type: "ext4", Source: dev.Name(), Options: []string{"noatime"}}}, tgt)
	if src := sourceForTest(t, tgt); src != dev.Name() {
		t.Errorf("mounted from %s, want the device %s itself", src, dev.Name())
	}
	writeFileForTest(t, filepath.Join(tgt, "f"), "x")
	if err := UnmountAll(tgt); err != nil {
		t.Fatal(err)
	}
}

// waitLoopDetached waits until the loop device has let go of its file (it
// detaches itself when the last user closes it; the kernel may take a
// moment after the unmount).
func waitLoopDetached(t *testing.T, dev string) {
	t.Helper()
	backing := filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file")
	for range 200 {
		if _, err := os.Stat(backing); errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("loop device %s still attached after unmount", dev)
}

func TestMountNestedAndUnmountDeepestFirst(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	src1, src2, tgt := filepath.Join(dir, "src1"), filepath.Join(dir, "src2"), filepath.Join(dir, "mnt")
	writeFileForTest(t, filepath.Join(src1, "sub", "hidden"), "src1")
	writeFileForTest(t, filepath.Join(src2, "inner", "hidden"), "src2")
	if err := os.Mkdir(tgt, 0o755); err != nil {
		t.Fatal(err)
	}
	mountAllForTest(t, []Mount{
		{Type: "bind", Source: src1, Options: []string{"rbind"}},
		{Type: "bind", Source: src2, Target: "sub", Options: []string{"rbind", "ro"}},
		{Type: "tmpfs", Source: "tmpfs", Target: "/sub/inner", Options: []string{"size=1m", "mode=0700"}},
	}, tgt)
	got := mountsBelowForTest(t, tgt)
	want := []string{filepath.Join(tgt, "sub", "inner"), filepath.Join(tgt, "sub"), tgt}
	if !slices.Equal(got, want) {
		t.Errorf("mounts, in unmount order: %v, want %v", got, want)
	}
	if fs := fsTypeForTest(t, filepath.Join(tgt, "sub", "inner")); fs != "tmpfs" {
		t.Errorf("sub/inner is %s, want tmpfs", fs)
	}
	if err := UnmountAll(tgt); err != nil {
		t.Fatal(err)
	}
	if left := mountsBelowForTest(t, tgt); len(left) != 0 {
		t.Errorf("left mounted: %v", left)
	}
	wantFileForTest(t, filepath.Join(src2, "inner", "hidden"), "src2")
}

func TestMountAllRollsBack(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	src, tgt := filepath.Join(dir, "src"), filepath.Join(dir, "mnt")
	writeFileForTest(t, filepath.Join(src, "sub", "f"), "x")
	if err := os.Mkdir(tgt, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		second Mount
		want   error
	}{
		{"missing source", Mount{Type: "bind", Source: filepath.Join(dir, "missing"), Target: "sub"}, unix.ENOENT},
		{"missing target", Mount{Type: "tmpfs", Source: "tmpfs", Target: "nowhere"}, unix.ENOENT},
		{"escaping target", Mount{Type: "tmpfs", Source: "tmpfs", Target: "sub/../../x"}, ErrInvalidArgument},
		{"no type", Mount{Source: src, Target: "sub"}, ErrInvalidArgument},
		{"bad fs type", Mount{Type: "no-such-fs", Source: "none", Target: "sub"}, unix.ENODEV},
		{"empty option", Mount{Type: "tmpfs", Source: "tmpfs", Target: "sub", Options: []string{""}}, ErrInvalidArgument},
		{"bind with data", Mount{Type: "bind", Source: src, Target: "sub", Options: []string{"size=1"}}, ErrInvalidArgument},
	}
	for _, c := range cases {
		err := MountAll([]Mount{{Type: "bind", Source: src}, c.second}, tgt)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "mount 2 of 2") {
			t.Errorf("%s: %v; want an error wrapping %v that names mount 2 of 2", c.name, err, c.want)
		}
		if left := mountsBelowForTest(t, tgt); len(left) != 0 {
			t.Errorf("%s: left mounted: %v", c.name, left)
			_ = UnmountAll(tgt)
		}
	}
}

func TestMountTargetStaysInside(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	src, outside, tgt := filepath.Join(dir, "src"), filepath.Join(dir, "outside"), filepath.Join(dir, "mnt")
	for _, d := range []string{src, outside, tgt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(src, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside", filepath.Join(src, "rel")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"abs", "rel"} {
		// Both resolve inside tgt, where there is no such directory.
		err := MountAll([]Mount{{Type: "bind", Source: src}, {Type: "tmpfs", Source: "tmpfs", Target: sub}}, tgt)
		if err == nil {
			_ = UnmountAll(tgt)
			t.Errorf("mount through symlink %s succeeded", sub)
		}
		wantMounted(t, outside, false)
		wantMounted(t, tgt, false)
	}
}

func TestUnmountAllNothingMounted(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	if err := UnmountAll(dir); err != nil {
		t.Errorf("UnmountAll of a plain directory: %v", err)
	}
	if err := UnmountAll(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("UnmountAll of a missing path: %v", err)
	}
	wantErrIs(t, "UnmountAll(/)", UnmountAll("/"), ErrInvalidArgument)
	wantMounted(t, dir, false)
	wantMounted(t, "/proc", true)
	if _, err := IsMountPoint(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("IsMountPoint of a missing path succeeded")
	}
}

func TestUnmountAllBusy(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	src, tgt := filepath.Join(dir, "src"), filepath.Join(dir, "mnt")
	writeFileForTest(t, filepath.Join(src, "f"), "busy")
	if err := os.Mkdir(tgt, 0o755); err != nil {
		t.Fatal(err)
	}
	mountAllForTest(t, []Mount{{Type: "tmpfs", Source: "tmpfs"}}, tgt)
	writeFileForTest(t, filepath.Join(tgt, "open"), "held")
	f, err := os.Open(filepath.Join(tgt, "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := UnmountAll(tgt); err != nil {
		t.Fatalf("UnmountAll of a busy mount: %v", err)
	}
	wantMounted(t, tgt, false)
	buf := make([]byte, 4)
	if _, err := f.Read(buf); err != nil || string(buf) != "held" {
		t.Errorf("open file of the detached mount reads %q, %v", buf, err)
	}
}

// fsTypeForTest is the filesystem type mounted at path.
func fsTypeForTest(t *testing.T, path string) string {
	t.Helper()
	return mountinfoForTest(t, path).FSType
}

// sourceForTest is the source of the mount at path.
func sourceForTest(t *testing.T, path string) string {
	t.Helper()
	return mountinfoForTest(t, path).Source
}

func mountinfoForTest(t *testing.T, path string) mountInfo {
	t.Helper()
	real, err := resolveMountPath(path)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := readMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	for i := len(infos) - 1; i >= 0; i-- {
		if infos[i].MountPoint == real {
			return infos[i]
		}
	}
	t.Fatalf("nothing mounted at %s", path)
	return mountInfo{}
}
