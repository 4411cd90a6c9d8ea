package unionfs

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// TestReaderProcsFollowServedMounts checks that serving a mount gives
// its FUSE readers Ps of their own and that unmounting gives them back.
func TestReaderProcsFollowServedMounts(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set in the environment, which reserveReaderProcs leaves alone")
	}
	waitNoServedMounts(t)
	before := runtime.GOMAXPROCS(0)
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "x"}, Options{})
	if _, err := os.ReadFile(tu.m("f")); err != nil {
		t.Fatal(err)
	}
	during := runtime.GOMAXPROCS(0)
	if before < maxReaderProcs() && during != min(before+readersPerServer, maxReaderProcs()) {
		t.Errorf("GOMAXPROCS while serving one more mount = %d, want %d + %d readers", during, before, readersPerServer)
	}
	tu.unmount(t)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.GOMAXPROCS(0) != before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS after the unmount = %d, want %d again", got, before)
	}
}

// waitNoServedMounts waits until the mounts of earlier tests have given
// their Ps back: a server releases them once its loop has ended, which
// may be after the unmount that ended it returned.
func waitNoServedMounts(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		readerProcs.mu.Lock()
		n := readerProcs.servers
		readerProcs.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d mounts of earlier tests are still served", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReaderProcsBounded checks that however many connections are
// served, GOMAXPROCS stays within maxReaderProcs, and that releasing
// twice gives back once.
func TestReaderProcsBounded(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set in the environment, which reserveReaderProcs leaves alone")
	}
	waitNoServedMounts(t)
	before := runtime.GOMAXPROCS(0)
	var releases []func()
	for range 100 {
		releases = append(releases, reserveReaderProcs())
	}
	if got, want := runtime.GOMAXPROCS(0), max(before, maxReaderProcs()); got != want {
		t.Errorf("GOMAXPROCS with 100 more connections = %d, want the bound %d", got, want)
	}
	for _, release := range releases {
		release()
		release()
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS after every release = %d, want %d again", got, before)
	}
}
