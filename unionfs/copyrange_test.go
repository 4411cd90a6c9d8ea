package unionfs

import (
	"bytes"
	"crypto/rand"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCopyFileRange copies between files of the union with
// copy_file_range(2): from a lower file into a new one, at offsets, and
// from a descriptor opened on a lower file before that file was copied
// up (which copies the data written since). The read-only branch stays
// as it was.
func TestCopyFileRange(t *testing.T) {
	lower := make([]byte, 3<<20)
	if _, err := rand.Read(lower); err != nil {
		t.Fatal(err)
	}
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:src": string(lower), "1:later": string(lower)}, Options{Passthrough: true})
	open := func(name string, flags int) *os.File {
		t.Helper()
		f, err := os.OpenFile(tu.m(name), flags, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	copyAll := func(src, dst *os.File, offIn, offOut int64, n int) {
		t.Helper()
		for n > 0 {
			c, err := unix.CopyFileRange(int(src.Fd()), &offIn, int(dst.Fd()), &offOut, n, 0)
			if err != nil {
				t.Fatalf("copy_file_range %s -> %s: %v", src.Name(), dst.Name(), err)
			}
			if c == 0 {
				t.Fatalf("copy_file_range %s -> %s: 0 bytes with %d left", src.Name(), dst.Name(), n)
			}
			n -= c
		}
	}
	check := func(name string, want []byte) {
		t.Helper()
		got, err := os.ReadFile(tu.m(name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, not the %d expected", name, len(got), len(want))
		}
	}

	src := open("src", os.O_RDONLY)
	copyAll(src, open("whole", os.O_RDWR|os.O_CREATE|os.O_EXCL), 0, 0, len(lower))
	check("whole", lower)
	// A range into the middle of an existing rw file.
	part := open("whole", os.O_RDWR)
	copyAll(src, part, 1<<20, 4096, 8192)
	want := append([]byte(nil), lower...)
	copy(want[4096:], lower[1<<20:1<<20+8192])
	check("whole", want)

	// A descriptor opened on the lower file before its copy-up copies
	// what was written after.
	early := open("later", os.O_RDONLY)
	w := open("later", os.O_WRONLY)
	if _, err := w.WriteAt([]byte("written after the open"), 0); err != nil {
		t.Fatal(err)
	}
	copyAll(early, open("fromlater", os.O_RDWR|os.O_CREATE|os.O_EXCL), 0, 0, len(lower))
	want = append([]byte(nil), lower...)
	copy(want, "written after the open")
	check("fromlater", want)

	// Into a read-only descriptor: refused by the kernel before the daemon.
	ro := open("src", os.O_RDONLY)
	offIn, offOut := int64(0), int64(0)
	if _, err := unix.CopyFileRange(int(src.Fd()), &offIn, int(ro.Fd()), &offOut, 10, 0); err != unix.EBADF {
		t.Errorf("copy_file_range into a read-only descriptor: %v, want EBADF", err)
	}
	for _, name := range []string{"src", "later"} {
		if got, err := os.ReadFile(tu.b(1, name)); err != nil || !bytes.Equal(got, lower) {
			t.Errorf("the read-only branch's %s changed (%v)", name, err)
		}
	}
}
