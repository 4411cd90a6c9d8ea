package unionfs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unionstack/unionstack/internal/testenv"
)

func TestAddDelBranchLive(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"0:up": "", "1:low": "", "1:shared": "from ro1"}, Options{})
	extra := filepath.Join(t.TempDir(), "extra")
	if err := os.MkdirAll(filepath.Join(extra, "d"), 0755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(extra, "added"), "")
	writeFile(t, filepath.Join(extra, "shared"), "from extra")
	if got, want := listDir(t, tu.mnt), []string{"low", "shared", "up"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls = %v, want %v", got, want)
	}
	mustNotExist(t, tu.m("added")) // cached negative entry, to be invalidated

	if err := tu.srv.AddBranch(Branch{Path: extra, Mode: RO}, 0); err == nil {
		t.Error("adding a branch above the rw branch succeeded")
	}
	if err := tu.srv.AddBranch(Branch{Path: extra, Mode: RW}, 1); err == nil {
		t.Error("adding a second rw branch succeeded")
	}
	if err := tu.srv.AddBranch(Branch{Path: extra, Mode: RO}, 1); err != nil {
		t.Fatal(err)
	}
	if got := len(tu.srv.Branches()); got != 3 {
		t.Fatalf("%d branches", got)
	}
	if got, want := listDir(t, tu.mnt), []string{"added", "d", "low", "shared", "up"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls after add = %v, want %v", got, want)
	}
	mustExist(t, tu.m("added"))
	if got := readFile(t, tu.m("shared")); got != "from extra" {
		t.Errorf("shared = %q, the added branch is above ro1", got)
	}

	if err := tu.srv.DelBranch(tu.branches[0]); err == nil {
		t.Error("deleting the rw branch succeeded")
	}
	f, err := os.Open(tu.m("added"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tu.srv.DelBranch(extra); err == nil {
		t.Error("deleting a branch with an open file succeeded")
	}
	f.Close()
	// The kernel releases the handle asynchronously after close.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := tu.srv.DelBranch(extra)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustNotExist(t, tu.m("added"))
	if got := readFile(t, tu.m("shared")); got != "from ro1" {
		t.Errorf("shared = %q after del", got)
	}
	if got, want := listDir(t, tu.mnt), []string{"low", "shared", "up"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls after del = %v, want %v", got, want)
	}
}

// TestModBranchLive: a read-only branch switched between ro and rr on
// the live stack changes whether its whiteouts and opaque markers count,
// at once and while lookups run; the rw branch and rw are refused.
func TestModBranchLive(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO, RO}, map[string]string{
		"1:.wh.gone": "", "1:d/.wh..wh..opq": "", "1:d/mid": "",
		"2:gone": "low", "2:kept": "", "2:d/under": "",
	}, Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour, NegativeTimeout: time.Hour})
	mid := tu.branches[1]
	// Lookups racing with changes of the mode (for the race detector).
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				_, _ = os.Lstat(tu.m("gone"))
				_, _ = os.ReadDir(tu.m("d"))
			}
		}
	}()
	for range 20 {
		for _, mode := range []Mode{RR, RO} {
			if err := tu.srv.ModBranch(mid, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	<-done
	// No settling: a lookup answered from the stack before the last
	// change but cached by the kernel after it must not outlive it (the
	// epoch, see invalidateBranch); the checks begin at ro.
	for _, mode := range []Mode{RO, RR, RO, RR} {
		if mode == RR {
			// Cached for an hour as missing, these must show once rr.
			mustNotExist(t, tu.m("gone"))
			mustNotExist(t, tu.m("d/under"))
		}
		if mode == RO {
			// Cached as it shows under rr (for an hour): the switch to
			// ro must hide it at once.
			_, _ = os.Lstat(tu.m("gone"))
		}
		if err := tu.srv.ModBranch(mid, mode); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"gone", "d/under"} {
			if _, err := os.Lstat(tu.m(name)); (err == nil) != (mode == RR) {
				t.Errorf("%s: lstat %s: %v", ModeName(mode), name, err)
			}
		}
		top, d := []string{"d", "kept"}, []string{"mid"}
		if mode == RR { // its whiteout and opaque marker are names no more
			top, d = []string{"d", "gone", "kept"}, []string{"mid", "under"}
		}
		if got := listDir(t, tu.mnt); !reflect.DeepEqual(got, top) {
			t.Errorf("%s: ls = %v, want %v", ModeName(mode), got, top)
		}
		if got := listDir(t, tu.m("d")); !reflect.DeepEqual(got, d) {
			t.Errorf("%s: ls d = %v, want %v", ModeName(mode), got, d)
		}
		if got := tu.srv.Branches()[1].Mode; got != mode {
			t.Errorf("Branches()[1].Mode = %s, want %s", ModeName(got), ModeName(mode))
		}
	}
	for _, tc := range []struct {
		path string
		mode Mode
		msg  string
	}{
		{tu.branches[0], RO, "stays rw while mounted"},
		{mid, RW, "only ro or rr"},
		{filepath.Join(mid, "d"), RR, "not in the stack"},
	} {
		if err := tu.srv.ModBranch(tc.path, tc.mode); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ModBranch(%s, %s) = %v; want an error naming %q", tc.path, ModeName(tc.mode), err, tc.msg)
		}
	}
}

func TestMountFailsCleanly(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "file"), "")
	for _, brs := range [][]Branch{
		{{Path: filepath.Join(dir, "missing"), Mode: RW}},
		{{Path: dir, Mode: RW}, {Path: filepath.Join(dir, "file"), Mode: RO}},
	} {
		srv, err := Mount(brs, mnt, Options{})
		if err == nil {
			_ = srv.Unmount()
			t.Fatalf("Mount(%v) succeeded", brs)
		}
		if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), mnt) {
			t.Fatalf("Mount(%v) failed (%v) but left a mount", brs, err)
		}
	}
}

// TestNotifyIncEpoch: moving the connection's epoch makes the kernel look
// up again a name it was told to keep for an hour, so a name changed
// behind its back is seen at its next use.
func TestNotifyIncEpoch(t *testing.T) {
	testenv.Need(t, canMountOwn(), "the union holds its /dev/fuse descriptor only when it mounts it (root)")
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:x": ""}, Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour, NegativeTimeout: time.Hour})
	mustExist(t, tu.m("x"))
	if err := os.Remove(tu.b(1, "x")); err != nil {
		t.Fatal(err)
	}
	tu.srv.Revalidate() // the daemon's own names; the kernel keeps its entry
	mustExist(t, tu.m("x"))
	tu.srv.u.notifyIncEpoch()
	mustNotExist(t, tu.m("x"))
}

// TestEditBranchesAllOrNone: a batch of branch edits is made whole or not
// at all. An add before a delete the daemon refuses (a file open in the
// branch) leaves the stack, the listing and the daemon's descriptors as
// they were; the same batch once the file is closed, with a mode change
// of the added branch, shows as one new stack.
func TestEditBranchesAllOrNone(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:low": "", "1:shared": "from ro1", "1:.wh.hidden": ""}, Options{})
	extra := filepath.Join(t.TempDir(), "extra")
	if err := os.Mkdir(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(extra, "added"), "")
	writeFile(t, filepath.Join(extra, "hidden"), "")
	before, fds := tu.srv.Branches(), rootFdCount(tu.srv.u)
	batch := []BranchEdit{
		{Op: EditAdd, Branch: Branch{Path: extra, Mode: RO}, Index: -1},
		{Op: EditMod, Branch: Branch{Path: extra, Mode: RR}},
		{Op: EditDel, Branch: Branch{Path: tu.branches[1]}},
	}

	f, err := os.Open(tu.m("low"))
	if err != nil {
		t.Fatal(err)
	}
	err = tu.srv.EditBranches(batch)
	f.Close()
	if !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), "del branch "+tu.branches[1]) {
		t.Fatalf("batch with a busy delete: %v, want EBUSY naming the delete", err)
	}
	if got := tu.srv.Branches(); !reflect.DeepEqual(got, before) {
		t.Errorf("stack after the refused batch = %v, want %v", got, before)
	}
	if got := rootFdCount(tu.srv.u); got != fds {
		t.Errorf("the refused batch left %d branch descriptors open, want %d", got, fds)
	}
	if got, want := listDir(t, tu.mnt), []string{"low", "shared"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls after the refused batch = %v, want %v", got, want)
	}

	// The kernel releases the handle asynchronously after close.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := tu.srv.EditBranches(batch)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []Branch{before[0], {Path: extra, Mode: RR}}
	if got := tu.srv.Branches(); !reflect.DeepEqual(got, want) {
		t.Errorf("stack after the batch = %v, want %v", got, want)
	}
	// ro1 and its whiteout are gone, so extra's hidden shows.
	if got, want := listDir(t, tu.mnt), []string{"added", "hidden"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ls after the batch = %v, want %v", got, want)
	}

	// A branch added and deleted by one batch leaves nothing behind.
	fds = rootFdCount(tu.srv.u)
	if err := tu.srv.EditBranches([]BranchEdit{
		{Op: EditAdd, Branch: Branch{Path: tu.branches[1], Mode: RO}, Index: 1},
		{Op: EditDel, Branch: Branch{Path: tu.branches[1]}},
	}); err != nil {
		t.Fatal(err)
	}
	if got := tu.srv.Branches(); !reflect.DeepEqual(got, want) {
		t.Errorf("stack after adding and deleting a branch = %v, want %v", got, want)
	}
	if got := rootFdCount(tu.srv.u); got != fds {
		t.Errorf("adding and deleting a branch left %d branch descriptors open, want %d", got, fds)
	}
}

// rootFdCount is how many branch descriptors u keeps open.
func rootFdCount(u *ufs) int {
	u.rootsMu.Lock()
	defer u.rootsMu.Unlock()
	return len(u.rootFds)
}
