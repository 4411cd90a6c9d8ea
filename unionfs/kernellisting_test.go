package unionfs

import (
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

// udbaNone are the options of udba=none, under which the kernel opens
// directories without a request (zeroOpendir).
var udbaNone = Options{EntryTimeout: udbaNoneTimeout, AttrTimeout: udbaNoneTimeout, NegativeTimeout: udbaNoneTimeout}

// manyFiles returns files f0000.. in dir of branch br, n of them.
func manyFiles(files map[string]string, br int, dir string, n int) map[string]string {
	if files == nil {
		files = map[string]string{}
	}
	for i := range n {
		files[fmt.Sprintf("%d:%s/f%04d", br, dir, i)] = ""
	}
	return files
}

// listingState reports how many handles the union opened for listings
// and how many it still holds.
func listingState(tu *testUnion) (opened, held int) {
	r := tu.srv.u.raw
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opened, len(r.listings)
}

// TestZeroOpendirListings lists directories of a udba=none union, whose
// directories the kernel opens without a request: the merged listing is
// right, a repeated listing is served by the kernel alone (no handle is
// opened for it), changes made through the mount show at once, and
// Revalidate makes a change made to a lower branch from outside show.
func TestZeroOpendirListings(t *testing.T) {
	files := manyFiles(nil, 1, "d", 600)
	files["0:d/.wh.f0000"] = ""
	files["0:d/u"] = ""
	tu := mountUnion(t, []Mode{RW, RO}, files, udbaNone)
	d := tu.m("d")
	want := []string{}
	for i := 1; i < 600; i++ {
		want = append(want, fmt.Sprintf("f%04d", i))
	}
	want = append(want, "u")
	if got := listDir(t, d); !slices.Equal(got, want) {
		t.Fatalf("listing: %d names %v..., want %d", len(got), got[:min(3, len(got))], len(want))
	}
	opened, held := listingState(tu)
	if opened == 0 || held != 0 {
		t.Fatalf("after a full listing: %d handles opened, %d held; want some opened, none held", opened, held)
	}
	for range 3 {
		if got := listDir(t, d); !slices.Equal(got, want) {
			t.Fatalf("repeated listing differs: %d names", len(got))
		}
	}
	if again, _ := listingState(tu); again != opened {
		t.Fatalf("repeated listings opened %d handles; the kernel's copy should have served them", again-opened)
	}

	writeFile(t, tu.m("d/new"), "x")
	if err := os.Remove(tu.m("d/f0001")); err != nil {
		t.Fatal(err)
	}
	want = append([]string{"f0002"}, want[2:]...)
	want = slices.Insert(want, len(want)-1, "new")
	if got := listDir(t, d); !slices.Equal(got, want) {
		t.Fatalf("after create and unlink: %d names, want %d", len(got), len(want))
	}

	writeFile(t, tu.b(1, "d/outside"), "x")
	tu.srv.Revalidate()
	if got := listDir(t, d); !slices.Contains(got, "outside") {
		t.Fatalf("after Revalidate: %q not listed", "outside")
	}
}

// TestZeroOpendirPartialReads reads the first names of many directories
// and stops, more than the union holds handles for: later full listings
// of each are still complete and exact, and no handle stays behind.
func TestZeroOpendirPartialReads(t *testing.T) {
	old := maxListings
	maxListings = 4
	t.Cleanup(func() { maxListings = old })
	var files map[string]string
	for i := range 10 {
		files = manyFiles(files, 1, fmt.Sprintf("d%d", i), 300)
	}
	tu := mountUnion(t, []Mode{RW, RO}, files, udbaNone)
	for i := range 10 {
		fd, err := syscall.Open(tu.m(fmt.Sprintf("d%d", i)), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, more := readSome(t, fd, nil); !more || len(got) == 0 {
			t.Fatalf("d%d: first read gave %d names", i, len(got))
		}
		syscall.Close(fd)
	}
	if _, held := listingState(tu); held > maxListings {
		t.Fatalf("%d unfinished listings held, want at most %d", held, maxListings)
	}
	for i := range 10 {
		got := listDir(t, tu.m(fmt.Sprintf("d%d", i)))
		if len(got) != 300 || got[0] != "f0000" || got[299] != "f0299" || len(slices.Compact(got)) != 300 {
			t.Fatalf("d%d: listing of %d names, want f0000..f0299 once each", i, len(got))
		}
	}
	if _, held := listingState(tu); held != 0 {
		t.Fatalf("%d listings still held after every directory was read to its end", held)
	}
}

// TestZeroOpendirForgottenDirectory stops reading a directory, then
// makes the kernel forget it (drop_caches evicts the unused inode): the
// union lets go of the listing it held for the forgotten node id, and
// the directory, looked up again, lists completely.
func TestZeroOpendirForgottenDirectory(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, manyFiles(manyFiles(nil, 1, "d", 300), 1, "e", 300), udbaNone)
	for _, dir := range []string{"d", "e"} {
		fd, err := syscall.Open(tu.m(dir), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, more := readSome(t, fd, nil); !more {
			t.Fatalf("%s: the first read reached the end", dir)
		}
		syscall.Close(fd)
	}
	if _, held := listingState(tu); held != 2 {
		t.Fatalf("%d unfinished listings held, want 2", held)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
			t.Fatal(err)
		}
		if _, held := listingState(tu); held == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the kernel forgot no directory within 5 s of drop_caches, or the union kept its listings")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, dir := range []string{"d", "e"} {
		if got := listDir(t, tu.m(dir)); len(got) != 300 || got[0] != "f0000" || got[299] != "f0299" {
			t.Fatalf("%s after the kernel forgot it: %d names", dir, len(got))
		}
	}
	if _, held := listingState(tu); held != 0 {
		t.Fatalf("%d listings still held after every directory was read to its end", held)
	}
}

// TestZeroOpendirReaderKeepsItsPlace reads a directory in small steps
// while it changes and another descriptor lists it: every name that
// stayed is read exactly once.
func TestZeroOpendirReaderKeepsItsPlace(t *testing.T) {
	readerKeepsItsPlace(t, mountUnion(t, []Mode{RW, RO}, manyFiles(nil, 1, "d", 600), udbaNone))
}

// TestZeroOpendirDescriptors checks what a descriptor of a directory the
// kernel opened without a request can still do: fsync it, and fstat it
// after the directory was removed (nlink 0).
func TestZeroOpendirDescriptors(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:e/": "", "0:f/": ""}, udbaNone)
	for _, name := range []string{"e", "f"} { // a lower and an upper directory
		fd, err := syscall.Open(tu.m(name), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		if err := syscall.Fsync(fd); err != nil {
			t.Fatalf("fsync %s: %v", name, err)
		}
		if err := syscall.Rmdir(tu.m(name)); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			t.Fatalf("fstat of removed %s: %v", name, err)
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFDIR || st.Nlink != 0 {
			t.Fatalf("fstat of removed %s: mode %o nlink %d, want a directory with nlink 0", name, st.Mode, st.Nlink)
		}
		mustNotExist(t, tu.m(name))
	}
}
