package unionfs

import (
	"fmt"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"
)

// TestDeepStackCachedLookups checks lookups and listings answered from
// the name cache of ro branches: overrides, whiteouts, opaque dirs,
// merges through several branches, RR whiteouts ignored, and an outside
// change shown at once after Revalidate.
func TestDeepStackCachedLookups(t *testing.T) {
	files := map[string]string{
		"5:a": "a5", "5:d/x": "x", "5:gone": "g", "5:o/low": "l", "5:f/": "",
		"4:.wh.gone": "", "4:d/y": "y", "4:f": "file over dir",
		"3:o/.wh..wh..opq": "", "3:o/high": "h", "3:a": "a3", "3:d/.wh.x": "",
		"2:d/z":   "z",
		"1:.wh.a": "", "1:e/": "",
	}
	tu := mountUnion(t, []Mode{RW, RR, RO, RO, RO, RO}, files, Options{})
	for round := range 2 { // the second round is answered from the cache
		if got := readFile(t, tu.m("a")); got != "a3" {
			t.Errorf("round %d: a = %q, want a3 (RR whiteout ignored)", round, got)
		}
		mustNotExist(t, tu.m("gone"))
		mustNotExist(t, tu.m("missing"))
		if got := readFile(t, tu.m("f")); got != "file over dir" {
			t.Errorf("round %d: f = %q", round, got)
		}
		if got, want := listDir(t, tu.m("d")), []string{"y", "z"}; !reflect.DeepEqual(got, want) {
			t.Errorf("round %d: ls d = %v, want %v", round, got, want)
		}
		mustNotExist(t, tu.m("d/x"))
		if got, want := listDir(t, tu.m("o")), []string{"high"}; !reflect.DeepEqual(got, want) {
			t.Errorf("round %d: ls o = %v, want %v", round, got, want)
		}
		mustNotExist(t, tu.m("o/low"))
		if got, want := listDir(t, tu.m("")), []string{"a", "d", "e", "f", "o"}; !reflect.DeepEqual(got, want) {
			t.Errorf("round %d: ls / = %v, want %v", round, got, want)
		}
	}
	writeFile(t, tu.b(5, "d/new"), "outside")
	tu.srv.Revalidate()
	if got := readFile(t, tu.m("d/new")); got != "outside" {
		t.Errorf("d/new after Revalidate = %q", got)
	}
	// Changes through the union (rw branch, never cached) show at once.
	writeFile(t, tu.m("d/made"), "m")
	if got, want := listDir(t, tu.m("d")), []string{"made", "new", "y", "z"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ls d = %v, want %v", got, want)
	}
}

// TestCachedLookupsConcurrent looks names up from many goroutines while
// the cache is dropped now and then (run it with -race).
func TestCachedLookupsConcurrent(t *testing.T) {
	modes := []Mode{RW}
	files := map[string]string{}
	for i := 1; i <= 8; i++ {
		modes = append(modes, RO)
		files[itoa(i)+":d/f"+itoa(i)] = itoa(i)
	}
	tu := mountUnion(t, modes, files, Options{EntryTimeout: -1, NegativeTimeout: 50 * time.Millisecond})
	tu2 := mountUnion(t, modes, files, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 50 {
				for _, u := range []*testUnion{tu, tu2} {
					if _, err := os.Lstat(u.m("d/f" + itoa(1+(g+r)%8))); err != nil {
						errs <- err
						return
					}
					if _, err := os.Lstat(u.m("d/none" + itoa(r))); !os.IsNotExist(err) {
						errs <- fmt.Errorf("d/none%d: %v", r, err)
						return
					}
				}
				if r%10 == 0 {
					tu2.srv.Revalidate()
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
