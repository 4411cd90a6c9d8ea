package unionfs

import (
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitListing lists p until it shows want (the kernel's cached listing
// must give way within the cache timeouts).
func waitListing(t *testing.T, p string, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := listDir(t, p)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listing of %s: got %v, want %v", p, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCachedListingFollowsChanges checks the kernel's cached directory
// listings: a lower branch changed from outside (which leaves the top
// copy's mtime alone) shows after the cache timeout, and changes made
// through the mount show at once.
func TestCachedListingFollowsChanges(t *testing.T) {
	forListingModes(t, cachedListingFollowsChanges)
}

func cachedListingFollowsChanges(t *testing.T) {
	to := 100 * time.Millisecond
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"0:d/u": "", "1:d/l": ""}, Options{EntryTimeout: to, AttrTimeout: to, NegativeTimeout: to})
	d := tu.m("d")
	for range 3 { // filled, then served from the kernel's cache
		if got, want := listDir(t, d), []string{"l", "u"}; !slices.Equal(got, want) {
			t.Fatalf("listing: got %v, want %v", got, want)
		}
	}
	writeFile(t, tu.b(1, "d/new"), "x")
	waitListing(t, d, []string{"l", "new", "u"})
	if err := os.Remove(tu.b(1, "d/l")); err != nil {
		t.Fatal(err)
	}
	waitListing(t, d, []string{"new", "u"})

	writeFile(t, tu.m("d/mine"), "x")
	if got, want := listDir(t, d), []string{"mine", "new", "u"}; !slices.Equal(got, want) {
		t.Fatalf("after create: got %v, want %v", got, want)
	}
	if err := os.Remove(tu.m("d/new")); err != nil {
		t.Fatal(err)
	}
	if got, want := listDir(t, d), []string{"mine", "u"}; !slices.Equal(got, want) {
		t.Fatalf("after unlink: got %v, want %v", got, want)
	}
}

// TestCachedListingTwoHandles lists a directory through two handles open
// at once while a lower branch changes from outside: the later listings
// never stay on the old contents.
func TestCachedListingTwoHandles(t *testing.T) {
	forListingModes(t, cachedListingTwoHandles)
}

func cachedListingTwoHandles(t *testing.T) {
	to := 50 * time.Millisecond
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"0:d/u": "", "1:d/l": ""}, Options{EntryTimeout: to, AttrTimeout: to, NegativeTimeout: to})
	d := tu.m("d")
	listDir(t, d)
	held, err := os.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	writeFile(t, tu.b(1, "d/new"), "x")
	time.Sleep(3 * to)
	waitListing(t, d, []string{"l", "new", "u"})
	// The held handle's snapshot (taken before the change) may now fill
	// the kernel's copy; later opens must not keep it.
	if _, err := held.Readdirnames(-1); err != nil {
		t.Fatal(err)
	}
	waitListing(t, d, []string{"l", "new", "u"})
	for range 3 {
		if got, want := listDir(t, d), []string{"l", "new", "u"}; !slices.Equal(got, want) {
			t.Fatalf("listing: got %v, want %v", got, want)
		}
	}
}

// readSome reads directory entries from fd with one small getdents
// call and appends their names ("." and ".." left out); it reports
// false at the end of the directory.
func readSome(t *testing.T, fd int, names []string) ([]string, bool) {
	t.Helper()
	buf := make([]byte, 1024)
	n, err := syscall.Getdents(fd, buf)
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 {
		return names, false
	}
	_, _, names = syscall.ParseDirent(buf[:n], -1, names)
	return names, true
}

// TestCachedListingReaderKeepsItsPlace reads a directory through one
// descriptor in small steps while the directory changes and another
// descriptor lists it from the start (which refills the kernel's cached
// listing from a newer snapshot): every name that stayed is read exactly
// once.
func TestCachedListingReaderKeepsItsPlace(t *testing.T) {
	forListingModes(t, func(t *testing.T) {
		files := map[string]string{}
		for i := range 600 {
			files[fmt.Sprintf("1:d/f%04d", i)] = ""
		}
		tu := mountUnion(t, []Mode{RW, RO}, files, Options{})
		readerKeepsItsPlace(t, tu)
	})
}

// readerKeepsItsPlace is TestCachedListingReaderKeepsItsPlace on tu,
// whose directory d holds f0000..f0599.
func readerKeepsItsPlace(t *testing.T, tu *testUnion) {
	t.Helper()
	d := tu.m("d")
	listDir(t, d) // fill the kernel's copy
	fd, err := syscall.Open(d, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	got, more := readSome(t, fd, nil)
	if !more || len(got) < 3 {
		t.Fatalf("first read: %d names", len(got))
	}
	// Remove two names already read, add one.
	gone := map[string]bool{got[0]: true, got[1]: true}
	for name := range gone {
		if err := os.Remove(filepath.Join(d, name)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(d, "added"), "")
	if n := len(listDir(t, d)); n != 599 {
		t.Fatalf("second descriptor lists %d names, want 599", n)
	}
	for more {
		got, more = readSome(t, fd, got)
	}
	seen := map[string]int{}
	for _, name := range got {
		seen[name]++
	}
	for i := range 600 {
		name := fmt.Sprintf("f%04d", i)
		if seen[name] != 1 && !gone[name] {
			t.Errorf("%s read %d times", name, seen[name])
		}
	}
}

// forListingModes runs test twice: with the kernel's cached listings of
// long timeouts forced on short ones (cacheListingsAlways), and as a
// union with short timeouts (udba=reval) has them, for a walk soon after
// the last refill (dirCacheRefill).
func forListingModes(t *testing.T, test func(t *testing.T)) {
	t.Run("long", func(t *testing.T) {
		cacheListingsAlways(t)
		test(t)
	})
	t.Run("short", test)
}

// cacheListingsAlways lets the kernel cache directory listings whatever
// the timeouts, for the rest of t (the tests of that cache use short
// ones).
func cacheListingsAlways(t *testing.T) {
	old := longCacheMin
	longCacheMin = 0
	t.Cleanup(func() { longCacheMin = old })
}

// TestListedFilesFollowCopyUp opens a directory (its listing is taken
// then), copies a listed lower file up through the mount and only then
// reads the listing with attributes: READDIRPLUS must answer for the
// upper copy, not for the lower file the listing found (see
// listedTops), so the file's data and size stay the upper ones.
func TestListedFilesFollowCopyUp(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:d/f": "lower", "1:d/g": "other"}, Options{})
	fd, err := syscall.Open(tu.m("d"), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	writeFile(t, tu.m("d/f"), "upper, and longer")
	var names []string
	for more := true; more; {
		names, more = readSome(t, fd, names)
	}
	if got := readFile(t, tu.m("d/f")); got != "upper, and longer" {
		t.Fatalf("after the listing: d/f = %q", got)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(tu.m("d/f"), &st); err != nil || st.Size != int64(len("upper, and longer")) {
		t.Fatalf("after the listing: d/f size %d (%v)", st.Size, err)
	}
	if got := readFile(t, tu.m("d/g")); got != "other" {
		t.Fatalf("d/g = %q", got)
	}
}

// TestRevalListingServedWhileFresh checks when a union with short
// timeouts (udba=reval) lets the kernel serve a listing from its copy:
// a listing right after the last refill is served from it, with no
// READDIR request; one after the names it renewed neared their timeout
// is filled afresh by READDIRPLUS.
func TestRevalListingServedWhileFresh(t *testing.T) {
	var reqs syncBuffer
	log.SetOutput(&reqs) // go-fuse's debug log of the requests
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	to := time.Second
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"0:d/u": "", "1:d/l": ""},
		Options{EntryTimeout: to, AttrTimeout: to, NegativeTimeout: to, Debug: true})
	d := tu.m("d")
	readdirs := func() int { return strings.Count(reqs.String(), "READDIR") }
	want := []string{"l", "u"}
	if got := listDir(t, d); !slices.Equal(got, want) {
		t.Fatalf("listing: got %v, want %v", got, want)
	}
	filled := readdirs()
	if filled == 0 {
		t.Fatal("the first listing sent no READDIR (is the debug log captured?)")
	}
	// The kernel releases a directory asynchronously; an opendir while
	// the first handle is still open would rightly refill the copy. So
	// wait for the reply to the RELEASEDIR ("rx N: RELEASEDIR", "tx N:").
	released := regexp.MustCompile(`rx (\d+): RELEASEDIR`)
	for deadline := time.Now().Add(to / 4); ; time.Sleep(time.Millisecond) {
		seen := reqs.String()
		if m := released.FindStringSubmatch(seen); m != nil && strings.Contains(seen, "tx "+m[1]+":") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first listing's handle was not released")
		}
	}
	if got := listDir(t, d); !slices.Equal(got, want) {
		t.Fatalf("second listing: got %v, want %v", got, want)
	}
	if n := readdirs(); n != filled {
		t.Errorf("a listing right after the last one sent %d READDIR requests, want it served from the kernel's copy", n-filled)
	}
	time.Sleep(to)
	if got := listDir(t, d); !slices.Equal(got, want) {
		t.Fatalf("third listing: got %v, want %v", got, want)
	}
	if readdirs() == filled {
		t.Error("a listing after the names' timeout was served from the kernel's copy, want it filled afresh")
	}
}

// TestRevalRewindShowsOutsideChange keeps a directory open under short
// timeouts (udba=reval), changes a lower branch from outside and rewinds
// after the timeout: the listing must show the change, as a new opendir
// would (POSIX rewinddir), even though the kernel cached the listing.
func TestRevalRewindShowsOutsideChange(t *testing.T) {
	to := 200 * time.Millisecond
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"0:d/u": "", "1:d/l": ""},
		Options{EntryTimeout: to, AttrTimeout: to, NegativeTimeout: to})
	f, err := os.Open(tu.m("d"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, want := rewindList(t, f), []string{"l", "u"}; !slices.Equal(got, want) {
		t.Fatalf("listing: got %v, want %v", got, want)
	}
	writeFile(t, tu.b(1, "d/new"), "x")
	time.Sleep(3 * to)
	if got, want := rewindList(t, f), []string{"l", "new", "u"}; !slices.Equal(got, want) {
		t.Fatalf("listing after rewinddir: got %v, want %v", got, want)
	}
	// The rewind filled the kernel's copy again; it must give way too.
	if err := os.Remove(tu.b(1, "d/l")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * to)
	if got, want := rewindList(t, f), []string{"new", "u"}; !slices.Equal(got, want) {
		t.Fatalf("listing after the second rewinddir: got %v, want %v", got, want)
	}
}

// rewindList rewinds the open directory f and lists it, sorted.
func rewindList(t *testing.T, f *os.File) []string {
	t.Helper()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}
