package unionfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
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
			if got := readFile(t, tu.b(1, "f")); got != "lower-data" {
				t.Fatalf("LOWER BRANCH WRITTEN: %q", got)
			}
			if got := readFile(t, tu.b(0, "f")); got != "UPPER-data-more" {
				t.Fatalf("upper = %q", got)
			}
			for i, f := range []*os.File{ro, ro2} {
				n, _ := f.ReadAt(buf, 0)
				if string(buf[:n]) != "UPPER-data-more" {
					t.Errorf("descriptor %d opened before the write reads %q, want the new data", i, buf[:n])
				}
			}
			// And writes via a descriptor opened before on the upper copy reach it.
			w2, err := os.OpenFile(tu.m("f"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w2.WriteAt([]byte("u"), 0); err != nil {
				t.Fatal(err)
			}
			w2.Close()
			if got := readFile(t, tu.b(1, "f")); got != "lower-data" {
				t.Fatalf("LOWER BRANCH WRITTEN: %q", got)
			}
			if n, _ := ro.ReadAt(buf, 0); string(buf[:n]) != "uPPER-data-more" {
				t.Errorf("old descriptor reads %q", buf[:n])
			}
		})
	}
}

// TestConcurrentWriters opens one lower file for append from many
// goroutines at once: the lower file stays unchanged and the upper
// copy holds every line exactly once, whole.
func TestConcurrentWriters(t *testing.T) {
	for _, pt := range []bool{true, false} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			orig := strings.Repeat("original line\n", 1000)
			tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": orig}, Options{Passthrough: pt})
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
