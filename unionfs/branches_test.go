package unionfs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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
