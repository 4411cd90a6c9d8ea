package graph_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testenv"
	"github.com/unionstack/unionstack/internal/testimage"
)

// Environment of the re-executed test binary in TestStoreCrashMidImport.
const (
	stCrashDirEnv    = "UNIONSTACK_STORE_CRASH_DIR"
	stCrashKillAtEnv = "UNIONSTACK_STORE_CRASH_KILL_AT"
)

// TestStoreCrashChild is the child of TestStoreCrashMidImport: it imports
// the layout and kills itself with SIGKILL once the import has read
// KILL_AT bytes of layer blobs, in the middle of unpacking a layer.
func TestStoreCrashChild(t *testing.T) {
	base := os.Getenv(stCrashDirEnv)
	if base == "" {
		t.Skip("helper process of TestStoreCrashMidImport")
	}
	killAt, err := strconv.ParseInt(os.Getenv(stCrashKillAtEnv), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	d, err := graph.Open("vfs", filepath.Join(base, "vfs"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := graph.OpenStore(filepath.Join(base, "store"), d)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Import(context.Background(), filepath.Join(base, "layout"), graph.ImportOptions{Progress: func(done, total int64) {
		if done >= killAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}})
	t.Fatalf("import ended (%v) instead of being killed", err)
}

// TestStoreCrashMidImport kills (SIGKILL) a process importing an image in
// the middle of unpacking its large second layer, then reopens the store:
// the first layer, complete, is there; of the second there is no trace (no
// layer, no active snapshot, no scratch file); the import then succeeds.
func TestStoreCrashMidImport(t *testing.T) {
	testenv.NeedRoot(t)
	base := t.TempDir()
	layer0 := testimage.NewTarBuilder().Dir("etc", 0o755).File("etc/base", 0o644, []byte("base\n")).Layer()
	big := testimage.NewTarBuilder().Dir("data", 0o755)
	rng := rand.New(rand.NewChaCha8([32]byte{1, 2, 3}))
	chunk := make([]byte, 1<<20)
	for i := 0; i < 24; i++ {
		for j := range chunk {
			chunk[j] = byte(rng.Uint32())
		}
		big.File(fmt.Sprintf("data/blob%02d", i), 0o644, chunk)
	}
	img := testimage.NewImage("crash:1", []testimage.Layer{layer0, big.Layer()}, testimage.RunConfig)
	layout := filepath.Join(base, "layout")
	if err := img.WriteOCILayout(layout, testimage.Gzip); err != nil {
		t.Fatal(err)
	}
	m, _, _, err := testimage.ReadLayout(layout)
	if err != nil {
		t.Fatal(err)
	}
	killAt := m.Layers[0].Size + 4<<20 // 4 MiB into the second layer's blob

	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreCrashChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), stCrashDirEnv+"="+base, stCrashKillAtEnv+"="+strconv.FormatInt(killAt, 10))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed: %v\n%s", err, out)
	}

	e := &stEnv{t: t, driverDir: filepath.Join(base, "vfs"), storeDir: filepath.Join(base, "store")}
	// Before the store recovers, the driver shows the interrupted unpack.
	d, err := graph.Open("vfs", e.driverDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	d.Walk(context.Background(), func(_ context.Context, info graph.Info) error {
		if _, ok := info.Labels[graph.LabelUnpack]; ok && info.Kind == graph.KindActive {
			active++
		}
		return nil
	}, "kind==Active")
	d.Close()
	if active != 1 {
		t.Errorf("expected the killed import's active unpack snapshot before recovery, found %d", active)
	}

	e.open(graph.StoreOptions{})
	t.Cleanup(e.close)
	chain := graph.ChainIDs(img.DiffIDs())
	if snaps := e.snapshots(); len(snaps) != 1 || snaps[0] != "Committed "+string(chain[0]) {
		t.Errorf("after recovery snapshots %v, want only the first layer", snaps)
	}
	ls, err := e.s.Layers(context.Background())
	if err != nil || len(ls) != 1 || ls[0].ChainID != chain[0] {
		t.Errorf("after recovery layers %v, %v", ls, err)
	}
	if imgs, _ := e.s.Images(context.Background()); len(imgs) != 0 {
		t.Errorf("image visible after a killed import: %v", imgs)
	}
	if left, _ := os.ReadDir(filepath.Join(e.storeDir, "tmp")); len(left) != 0 {
		t.Errorf("scratch files left: %v", left)
	}
	got := e.mustImport(layout, graph.ImportOptions{})
	if got.ID != img.ID {
		t.Errorf("re-import: %s", got.ID)
	}
}
