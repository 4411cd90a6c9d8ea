package unionfs

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/unionstack/unionstack/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestCopyUpReflinks: with both branches on a file system that shares
// extents (xfs, made with reflink, the default), copying up a large file
// shares its data with the lower file instead of writing it again: the
// copy takes almost no space, and writing the copy afterwards leaves the
// lower file as it was.
func TestCopyUpReflinks(t *testing.T) {
	needFUSE(t)
	img := testenv.MakeImage(t, "mkfs.xfs", 400<<20, "-q", "-f", "-m", "reflink=1")
	dir := t.TempDir()
	fsdir := filepath.Join(dir, "xfs")
	if err := os.Mkdir(fsdir, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.LoopMount(t, img, fsdir) // unmounted after the union below

	const size = 64 << 20
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	rw, ro, mnt := fsdir+"/rw", fsdir+"/ro", dir+"/mnt"
	for _, d := range []string{rw, ro, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(ro+"/big", data, 0o644); err != nil {
		t.Fatal(err)
	}
	tu := &testUnion{mnt: mnt, branches: []string{rw, ro}, stack: []Branch{{Path: rw, Mode: RW}, {Path: ro, Mode: RO}}}
	tu.remount(t)
	t.Cleanup(func() { tu.unmount(t) })

	free := func() int64 {
		t.Helper()
		unix.Sync()
		var st unix.Statfs_t
		if err := unix.Statfs(fsdir, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * st.Bsize
	}
	before := free()
	f, err := os.OpenFile(tu.m("big"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if used := before - free(); used > size/8 {
		t.Errorf("the copy-up of a %d MiB file took %d KiB: its data was written again, not shared", size>>20, used>>10)
	}
	if !sharesExtents(t, rw+"/big") {
		t.Error("the copy shares no extent with its lower file")
	}
	// What a copy that shares nothing looks like.
	if out, err := exec.Command("cp", "--reflink=never", ro+"/big", fsdir+"/plain").CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if sharesExtents(t, fsdir+"/plain") {
		t.Error("FIEMAP marks a plain copy's extents shared")
	}
	got, err := os.ReadFile(tu.m("big"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append(data, '!')) {
		t.Error("the copy does not read as the lower file with the byte appended")
	}

	// Writing the copy unshares what it writes; the lower file keeps its
	// data.
	f, err = os.OpenFile(tu.m("big"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xaa}, 1<<20), size/2); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	lower, err := os.ReadFile(ro + "/big")
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(lower) != sha256.Sum256(data) {
		t.Error("writing the copy changed the lower file")
	}
}

// sharesExtents reports whether FIEMAP marks any extent of file p shared.
func sharesExtents(t *testing.T, p string) bool {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const (
		fsIocFiemap        = 0xc020660b
		fiemapFlagSync     = 0x1
		fiemapExtentShared = 0x2000
		extents            = 64
	)
	// struct fiemap (32 bytes) then struct fiemap_extent (56 bytes) each.
	buf := make([]byte, 32+56*extents)
	le := func(b []byte, v uint64, n int) {
		for i := range n {
			b[i] = byte(v >> (8 * i))
		}
	}
	le(buf[8:], ^uint64(0), 8)      // fm_length
	le(buf[16:], fiemapFlagSync, 4) // fm_flags
	le(buf[24:], extents, 4)        // fm_extent_count
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		t.Fatalf("FIEMAP %s: %v", p, errno)
	}
	mapped := int(uint32(buf[20]) | uint32(buf[21])<<8 | uint32(buf[22])<<16 | uint32(buf[23])<<24)
	for i := range mapped {
		ext := buf[32+56*i:]
		flags := uint32(ext[40]) | uint32(ext[41])<<8 | uint32(ext[42])<<16 | uint32(ext[43])<<24
		if flags&fiemapExtentShared != 0 {
			return true
		}
	}
	return false
}
