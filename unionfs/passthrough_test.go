package unionfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// TestPassthroughTrap is the sequence that writes a lower branch on
// FUSE file systems that share one kernel backing file per inode: a
// lower file held open read-only by one descriptor, then opened for
// writing by another and written. The lower file must stay unchanged,
// and the first descriptor must read the new data.
func TestPassthroughTrap(t *testing.T) {
	for _, pt := range []bool{true, false} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "lower-data"}, Options{Passthrough: pt})
			ro, err := os.Open(tu.m("f"))
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			buf := make([]byte, 64)
			if n, _ := ro.ReadAt(buf, 0); string(buf[:n]) != "lower-data" {
				t.Fatalf("first read %q", buf[:n])
			}
			rw, err := os.OpenFile(tu.m("f"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rw.WriteAt([]byte("UPPER"), 0); err != nil {
				t.Fatal(err)
			}
			// Writes through a later read-only open too.
			ro2, err := os.Open(tu.m("f"))
			if err != nil {
				t.Fatal(err)
			}
			defer ro2.Close()
			if _, err := rw.WriteAt([]byte("-more"), 10); err != nil {
				t.Fatal(err)
			}
			rw.Close()
			checkCopied(t, tu, "f", "lower-data", "UPPER-data-more")
			for i, f := range []*os.File{ro, ro2} {
				n, _ := f.ReadAt(buf, 0)
				if string(buf[:n]) != "UPPER-data-more" {
					t.Errorf("descriptor %d opened before the write reads %q, want the new data", i, buf[:n])
				}
			}
			// And writes via a descriptor opened before on the upper copy reach it.
			writeAt(t, tu.m("f"), "u", 0)
			if got := readFile(t, tu.b(1, "f")); got != "lower-data" {
				t.Fatalf("LOWER BRANCH WRITTEN: %q", got)
			}
			if n, _ := ro.ReadAt(buf, 0); string(buf[:n]) != "uPPER-data-more" {
				t.Errorf("old descriptor reads %q", buf[:n])
			}
		})
	}
}

// TestMmapBeforeCopyUp maps a lower file shared and read-only, then
// writes the file through another descriptor, which copies it up. The
// mapping must show the new data: one file, one page cache, as POSIX
// says. Kernel overlayfs keeps such a mapping on the lower file; unionfs
// in its defaults goes further.
func TestMmapBeforeCopyUp(t *testing.T) {
	for _, pt := range []bool{true, false} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			lower := strings.Repeat("l", 8192)
			tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": lower}, Options{Passthrough: pt})
			// The mapping lives in a helper process: a page fault on a FUSE
			// mapping served by this same Go process can deadlock.
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "UNIONFS_TEST_HELPER=mmapwatch", "UNIONFS_TEST_PATH="+tu.m("f"))
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer stdin.Close()
			out := bufio.NewScanner(stdout)
			if !out.Scan() || out.Text() != "ready llll" {
				t.Fatalf("mapping helper says %q before the copy-up", out.Text())
			}
			writeAt(t, tu.m("f"), "UPPER", 4096)
			checkCopied(t, tu, "f", lower, lower[:4096]+"UPPER"+lower[4101:])
			if _, err := io.WriteString(stdin, "look\n"); err != nil {
				t.Fatal(err)
			}
			if !out.Scan() {
				t.Fatalf("mapping helper ended: %v", out.Err())
			}
			if got := out.Text(); got != "UPPER" {
				t.Errorf("mapping made before the copy-up reads %q, want the data written after it", got)
			}
		})
	}
}

// TestConcurrentWriters opens one lower file for append from many
// goroutines at once: the lower file stays unchanged and the upper
// copy holds every line exactly once, whole.
func TestConcurrentWriters(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts Options
	}{
		{"passthrough=on", Options{Passthrough: true}},
		{"passthrough=off", Options{}},
		{"passthrough=all", Options{Passthrough: true, PassthroughLower: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			orig := strings.Repeat("original line\n", 1000)
			tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": orig}, mode.opts)
			const writers, lines = 16, 40
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					// A reader holding the lower file open meanwhile.
					r, err := os.Open(tu.m("f"))
					if err == nil {
						_, _ = io.ReadAll(r)
						defer r.Close()
					}
					f, err := os.OpenFile(tu.m("f"), os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						errs <- err
						return
					}
					defer f.Close()
					for i := 0; i < lines; i++ {
						if _, err := fmt.Fprintf(f, "writer %02d line %03d\n", w, i); err != nil {
							errs <- err
							return
						}
					}
				}(w)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if got := readFile(t, tu.b(1, "f")); got != orig {
				t.Fatal("LOWER BRANCH WRITTEN")
			}
			up := []byte(readFile(t, tu.b(0, "f")))
			if !bytes.HasPrefix(up, []byte(orig)) {
				t.Fatal("upper copy lost the original data")
			}
			seen := map[string]bool{}
			for _, l := range strings.Split(strings.TrimSuffix(string(up[len(orig):]), "\n"), "\n") {
				if seen[l] || !strings.HasPrefix(l, "writer ") || len(l) != len("writer 00 line 000") {
					t.Fatalf("bad or repeated line %q", l)
				}
				seen[l] = true
			}
			if len(seen) != writers*lines {
				t.Fatalf("%d lines, want %d", len(seen), writers*lines)
			}
			if got := readFile(t, tu.m("f")); got != string(up) {
				t.Fatal("mount and upper branch disagree")
			}
		})
	}
}

// TestPassthroughOpenDuringRelease reads lower files and at once opens
// them for write (copy-up, passthrough), from many goroutines: the
// release of the read handle then runs while the write handle is
// opened. go-fuse drops a passthrough reference on every release, so a
// passthrough handle opened during one lost its backing file and the
// kernel failed the open with EIO (see rawUnion.Release).
func TestPassthroughOpenDuringRelease(t *testing.T) {
	files := map[string]string{}
	for i := range 400 {
		files[fmt.Sprintf("1:f%03d", i)] = "lower"
	}
	tu := mountUnion(t, []Mode{RW, RO}, files, Options{Passthrough: true})
	errs := make(chan error, 400)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 400; i += 8 {
				p := tu.m(fmt.Sprintf("f%03d", i))
				if _, err := os.ReadFile(p); err != nil {
					errs <- err
					return
				}
				if err := os.WriteFile(p, []byte("upper"), 0o644); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPassthroughSharedDuringRelease opens a file again while one of its
// passthrough handles is open and a release is in flight (simulated):
// the new handle must share the passthrough (the kernel refuses any
// other kind of open of an inode with a backing file, with EIO).
func TestPassthroughSharedDuringRelease(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"0:f": "upper"}, Options{Passthrough: true})
	held, err := os.OpenFile(tu.m("f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	raw := tu.srv.u.raw
	raw.releasing.Add(1)
	defer raw.releasing.Add(-1)
	for _, flag := range []int{os.O_RDONLY, os.O_WRONLY | os.O_APPEND} {
		f, err := os.OpenFile(tu.m("f"), flag, 0)
		if err != nil {
			t.Fatalf("open (flags %#x) while a passthrough handle is open and a release in flight: %v", flag, err)
		}
		f.Close()
	}
}

// openLower opens name of the mount read-only (closed when the test
// ends) and reports its inode number and whether the open is passed
// through to a read-only branch's file.
func openLower(t *testing.T, tu *testUnion, name string) (*os.File, uint64, bool) {
	t.Helper()
	f, err := os.Open(tu.m(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, st.Ino, lowerPassthrough(tu, st.Ino)
}

// lowerPassthrough reports whether the live node of inode ino is passed
// through to a read-only branch's file.
func lowerPassthrough(tu *testUnion, ino uint64) bool {
	u := tu.srv.u
	u.nodesMu.Lock()
	n := u.nodes[ino]
	u.nodesMu.Unlock()
	if n == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ptOpen > 0 && n.lowerBacking != nil
}

// TestPassthroughAll checks passthrough=all, which passes lower files
// opened read-only through to the kernel, at the documented price: a
// descriptor opened before a copy-up keeps reading the lower file. Opens
// after it see the copy, the inode number stays, and nothing reaches the
// read-only branch.
func TestPassthroughAll(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "lower-data", "1:g": "lower-g"},
		Options{Passthrough: true, PassthroughLower: true})
	ro, ino0, pt := openLower(t, tu, "f")
	if !pt {
		t.Fatal("read-only open of a lower file is not passed through")
	}
	buf := make([]byte, 64)
	if n, _ := ro.ReadAt(buf, 0); string(buf[:n]) != "lower-data" {
		t.Fatalf("first read %q", buf[:n])
	}
	// A second read-only open shares the lower backing file.
	ro2, err := os.Open(tu.m("f"))
	if err != nil {
		t.Fatal(err)
	}
	ro2.Close()

	rw, err := os.OpenFile(tu.m("f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open for write while a lower passthrough descriptor is open: %v", err)
	}
	if _, err := rw.WriteAt([]byte("UPPER"), 0); err != nil {
		t.Fatal(err)
	}
	var st1 syscall.Stat_t
	if err := syscall.Fstat(int(rw.Fd()), &st1); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	checkCopied(t, tu, "f", "lower-data", "UPPER-data")
	if got := readFile(t, tu.m("f")); got != "UPPER-data" {
		t.Fatalf("a new open reads %q, want the copy", got)
	}
	if n, _ := ro.ReadAt(buf, 0); string(buf[:n]) != "lower-data" {
		t.Fatalf("descriptor opened before the copy-up reads %q, want the lower file (passthrough=all)", buf[:n])
	}
	// Reopening the old descriptor through /proc names the old kernel
	// inode, whose backing file is the lower one: while it is open, that
	// fails with ESTALE (README).
	if re, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", ro.Fd())); err == nil {
		re.Close()
		t.Error("reopen via /proc of a descriptor passed through to the lower file succeeded")
	} else if !errors.Is(err, syscall.ESTALE) {
		t.Errorf("reopen via /proc: %v, want ESTALE", err)
	}
	if st1.Ino != ino0 {
		t.Fatalf("inode number changed across copy-up: %d → %d", ino0, st1.Ino)
	}
	// The copy's descriptors are passed through to the rw branch.
	writeAt(t, tu.m("f"), "u", 0)
	if got := readFile(t, tu.m("f")); got != "uPPER-data" {
		t.Fatalf("after a second write the mount reads %q", got)
	}

	// A truncate by path while a lower passthrough descriptor is open.
	rg, err := os.Open(tu.m("g"))
	if err != nil {
		t.Fatal(err)
	}
	defer rg.Close()
	if err := os.Truncate(tu.m("g"), 3); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, tu.m("g")); got != "low" {
		t.Fatalf("after truncate the mount reads %q", got)
	}
	if got := readFile(t, tu.b(1, "g")); got != "lower-g" {
		t.Fatalf("LOWER BRANCH CHANGED: %q", got)
	}
	if err := os.Chmod(tu.m("g"), 0600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tu.m("g"), []byte("new-g"), 0); err != nil {
		t.Fatal(err)
	}
	checkCopied(t, tu, "g", "lower-g", "new-g")
}

// TestPassthroughReadOnlyUnion: a union without an rw branch never
// copies up, so its files are passed through with plain passthrough=on.
func TestPassthroughReadOnlyUnion(t *testing.T) {
	tu := mountUnion(t, []Mode{RO, RR}, map[string]string{"0:f": "top", "1:g": "bottom"}, Options{Passthrough: true})
	// Both are opened before either is closed: the first passthrough
	// open of a node waits out releases in flight (rawUnion.Release).
	for name, want := range map[string]string{"f": "top", "g": "bottom"} {
		f, _, pt := openLower(t, tu, name)
		if !pt {
			t.Errorf("%s: not passed through", name)
		}
		if b, err := io.ReadAll(f); err != nil || string(b) != want {
			t.Errorf("%s reads %q, %v; want %q", name, b, err, want)
		}
	}
}

// checkCopied fails unless name holds lower in branch 1 (unchanged) and
// upper in branch 0 (its copy).
func checkCopied(t *testing.T, tu *testUnion, name, lower, upper string) {
	t.Helper()
	if got := readFile(t, tu.b(1, name)); got != lower {
		t.Fatalf("LOWER BRANCH WRITTEN: %s = %q", name, got)
	}
	if got := readFile(t, tu.b(0, name)); got != upper {
		t.Fatalf("upper %s = %q, want %q", name, got, upper)
	}
}

// writeAt opens p for writing and writes data at off.
func writeAt(t *testing.T, p, data string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(data), off); err != nil {
		t.Fatal(err)
	}
}
