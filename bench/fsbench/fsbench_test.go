package fsbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/internal/testenv"
)

// testScale is the scale of the comparison test: a 2 MiB file, 100 files
// walked, 20 created and unlinked, 512 KiB copied up.
const testScale = 0.002

// ourFS returns unionstack's unionfs for tests and benchmarks: the unionctl
// binary named by $UNIONSTACK_UNIONCTL when set (the real daemon), else
// unionfs.Mount in this process.
func ourFS() FS {
	if exe := os.Getenv("UNIONSTACK_UNIONCTL"); exe != "" {
		return &UnionctlFS{Exe: exe}
	}
	return inProcessFS()
}

// testFilesystems returns every filesystem, skipping (or failing under
// UNIONSTACK_REQUIRE_ALL=1) when a peer is missing.
func testFilesystems(t testing.TB) []FS {
	testenv.NeedRoot(t)
	testenv.Need(t, OverlayFS{}.Available() == nil, "kernel overlayfs")
	testenv.Need(t, fuseAvailable() == nil, "/dev/fuse")
	testenv.NeedCommand(t, "fuse-overlayfs")
	testenv.NeedCommand(t, "unionfs-fuse")
	return []FS{OverlayFS{}, NewFuseOverlayFS(), NewUnionFSFuse(), ourFS()}
}

// TestCompareSameTree runs the whole comparison at a tiny scale and checks
// that every filesystem did each workload right and ended with the same
// merged tree: created files present, unlinked files gone, the copied-up
// file holding its data plus the appended byte, the lower branch untouched.
func TestCompareSameTree(t *testing.T) {
	filesystems := testFilesystems(t)
	sz, err := ForScale(testScale)
	if err != nil {
		t.Fatal(err)
	}
	sz.Repeat = 2 // two rounds of every workload, each on its own targets
	parent := t.TempDir()
	var log strings.Builder
	rep, err := Run(context.Background(), Config{Scratch: parent, FS: filesystems, Sizes: sz, Verify: true, Progress: &log})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	for _, res := range rep.Results {
		if res.Skipped != "" {
			t.Errorf("%s skipped: %s", res.Name, res.Skipped)
			continue
		}
		if res.Failed() {
			t.Errorf("%s failed: err=%q workloads=%v verify=%q", res.Name, res.Err, res.Errors, res.VerifyErr)
		}
		if !res.Verified {
			t.Errorf("%s not verified", res.Name)
		}
		if len(res.Times) != len(Workloads) {
			t.Errorf("%s: %d of %d workloads measured", res.Name, len(res.Times), len(Workloads))
		}
		for wl, runs := range res.Runs {
			if len(runs) != sz.Repeat {
				t.Errorf("%s %s: %d rounds measured, want %d", res.Name, wl, len(runs), sz.Repeat)
			}
		}
		// The peers run as daemons of their own; overlay and the
		// in-process unionfs have none to measure.
		_, inProcess := ourFS().(InProcessFS)
		hasDaemon := res.Name == FuseOverlayFS || res.Name == UnionFSFuse || (res.Name == UnionFS && !inProcess)
		if measured := res.RSSAtMount > 0 && res.RSSAfterWalk > 0; measured != hasDaemon {
			t.Errorf("%s: daemon memory %d B at mount, %d B after the walk; want measured=%v", res.Name, res.RSSAtMount, res.RSSAfterWalk, hasDaemon)
		}
	}
	ref := rep.Result(Overlay).Tree()
	if len(ref) == 0 {
		t.Fatal("overlay recorded no tree")
	}
	for _, res := range rep.Results[1:] {
		if d := DiffTrees(ref, res.Tree()); d != "" {
			t.Errorf("%s: merged tree differs from overlay's: %s", res.Name, d)
		}
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("progress:\n%s\n%s", log.String(), table.String())
	if strings.Contains(log.String(), "removing the branches") {
		t.Error("Run removed branches before the end with room to spare")
	}
	if !strings.Contains(table.String(), "resident memory of the FUSE daemon") {
		t.Error("the table has no daemon memory")
	}
	// Run removed its scratch directory and everything mounted in it.
	if entries, err := os.ReadDir(parent); err != nil || len(entries) != 0 {
		t.Errorf("scratch parent %s after Run: %d entries, %v", parent, len(entries), err)
	}
	if left, _ := mountsUnder(parent); len(left) != 0 {
		t.Errorf("mounts left after Run: %v", left)
	}
}

// TestRunMakesRoom runs two filesystems in a scratch directory with room
// for the branches of one: Run removes the first one's branches before
// the second runs, says so, and both run and verify.
func TestRunMakesRoom(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.Need(t, OverlayFS{}.Available() == nil, "kernel overlayfs")
	testenv.Need(t, fuseAvailable() == nil, "/dev/fuse")
	sz, err := ForScale(testScale)
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	size := fmt.Sprintf("size=%d", sz.scratchBytes()*2)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", size, "bench-scratch", parent).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(parent, unix.MNT_DETACH) })
	var log strings.Builder
	rep, err := Run(context.Background(), Config{Scratch: parent, FS: []FS{OverlayFS{}, ourFS()}, Sizes: sz, Verify: true, Progress: &log})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	for _, res := range rep.Results {
		if res.Failed() || !res.Verified {
			t.Errorf("%s: err %q, workloads %v, verify %q", res.Name, res.Err, res.Errors, res.VerifyErr)
		}
	}
	if !strings.Contains(log.String(), "removing the branches of the filesystems before it") {
		t.Errorf("Run did not say it made room:\n%s", log.String())
	}
}

// TestRunMountFailure checks that a filesystem that cannot mount is
// reported as failed with its daemon's reason, that the others still run,
// and that nothing is left behind.
func TestRunMountFailure(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.Need(t, OverlayFS{}.Available() == nil, "kernel overlayfs")
	broken := &FuseDaemon{FSName: "broken", Program: "sh", Args: func(b Branches) []string {
		return []string{"-c", "echo no such branch >&2; exit 3"}
	}}
	sz, err := ForScale(testScale)
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	rep, err := Run(context.Background(), Config{Scratch: parent, FS: []FS{OverlayFS{}, broken}, Sizes: sz, Verify: true})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res := rep.Result(Overlay); res.Failed() || !res.Verified {
		t.Errorf("overlay: err %q, workloads %v, verify %q", res.Err, res.Errors, res.VerifyErr)
	}
	res := rep.Result("broken")
	if !res.Failed() || !strings.Contains(res.Err, "no such branch") || len(res.Times) != 0 {
		t.Errorf("broken fs: err %q, times %v; want a mount failure quoting its log", res.Err, res.Times)
	}
	if !rep.Failed() {
		t.Error("report does not say it failed")
	}
	if entries, err := os.ReadDir(parent); err != nil || len(entries) != 0 {
		t.Errorf("scratch parent %s after Run: %d entries, %v", parent, len(entries), err)
	}
}

// TestRunCancelled cancels a run in the middle of a workload, with a FUSE
// daemon serving the mount, and checks that Run says so and leaves no
// mount, daemon or scratch directory behind.
func TestRunCancelled(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.Need(t, fuseAvailable() == nil, "/dev/fuse")
	testenv.NeedCommand(t, "fuse-overlayfs")
	sz, err := ForScale(testScale)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var daemonPids []int
	interrupt := Workload{Name: "interrupt", Label: func(Sizes) string { return "interrupt" },
		Run: func(ctx context.Context, mnt string, sz Sizes, r int, t Timer) error {
			daemonPids = fuseDaemonPids(mnt)
			cancel() // as Ctrl-C does in unionctl
			<-ctx.Done()
			return ctx.Err()
		}}
	seq, _ := WorkloadByName("seqread")
	parent := t.TempDir()
	_, err = Run(ctx, Config{Scratch: parent, FS: []FS{NewFuseOverlayFS(), OverlayFS{}}, Sizes: sz,
		Workloads: []Workload{seq, interrupt, seq}, Verify: true})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run after cancel: %v, want context.Canceled", err)
	}
	if entries, err := os.ReadDir(parent); err != nil || len(entries) != 0 {
		t.Errorf("scratch parent %s after Run: %d entries, %v", parent, len(entries), err)
	}
	if left, _ := mountsUnder(parent); len(left) != 0 {
		t.Errorf("mounts left after Run: %v", left)
	}
	if len(daemonPids) == 0 {
		t.Fatal("found no fuse-overlayfs daemon while mounted")
	}
	for _, pid := range daemonPids {
		if err := unix.Kill(pid, 0); err == nil {
			t.Errorf("fuse-overlayfs daemon %d still running after Run", pid)
		}
	}
}

// fuseDaemonPids returns the pids of fuse-overlayfs processes whose
// command line names mnt.
func fuseDaemonPids(mnt string) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), "fuse-overlayfs") && strings.Contains(string(cmdline), mnt) {
			pids = append(pids, pid)
		}
	}
	return pids
}
