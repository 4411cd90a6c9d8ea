package graphtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/unionstack/unionstack/graph"
)

// concurrency is how many goroutines the concurrent case runs at once.
const concurrency = 20

// testConcurrent: many goroutines at once prepare (or view) a snapshot of
// one parent, mount it, write and read, unmount, commit some, and remove
// them; each sees its own tree and nothing is left over.
func testConcurrent(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	CommitLayer(t, d, "base", "", baseTree()...)
	scratch := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	for i := 0; i < concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := concurrentWorker(d, i, filepath.Join(scratch, fmt.Sprint(i))); err != nil {
				errs <- fmt.Errorf("worker %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := keysOf(t, d)
	if len(got) != 1 || got["base"].Kind != graph.KindCommitted {
		t.Errorf("after all workers removed their snapshots: %v, want only base", got)
	}
}

// concurrentWorker is one goroutine of testConcurrent: it cannot use t's
// fatal helpers, so it returns its first error and always unmounts.
func concurrentWorker(d graph.Driver, i int, mnt string) (err error) {
	ctx := context.Background()
	key := fmt.Sprintf("worker-%d", i)
	view := i%4 == 3
	var mounts []graph.Mount
	if view {
		mounts, err = d.View(ctx, key, "base")
	} else {
		mounts, err = d.Prepare(ctx, key, "base")
	}
	if err != nil {
		return err
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}
	if err := graph.MountAll(mounts, mnt); err != nil {
		return err
	}
	defer func() {
		if uerr := graph.UnmountAll(mnt); uerr != nil && err == nil {
			err = uerr
		}
		if err == nil {
			err = finishWorker(ctx, d, i, key, view)
		}
	}()
	got, err := os.ReadFile(filepath.Join(mnt, "etc/hostname"))
	if err != nil || string(got) != "base\n" {
		return fmt.Errorf("read etc/hostname: %q, %v", got, err)
	}
	if view {
		if os.WriteFile(filepath.Join(mnt, "mine"), nil, 0o644) == nil {
			return fmt.Errorf("wrote into view %s", key)
		}
		return nil
	}
	mine := fmt.Sprintf("written by %d", i)
	if err := os.WriteFile(filepath.Join(mnt, "etc/hostname"), []byte(mine), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mnt, "mine"), []byte(mine), 0o644); err != nil {
		return err
	}
	names, err := ReadNames(mnt)
	if err != nil {
		return err
	}
	if want := "bin etc mine var"; fmt.Sprint(names) != "["+want+"]" {
		return fmt.Errorf("names in %s: %v, want [%s] (another worker's file showing?)", key, names, want)
	}
	got, err = os.ReadFile(filepath.Join(mnt, "etc/hostname"))
	if err != nil || string(got) != mine {
		return fmt.Errorf("read back etc/hostname: %q, %v", got, err)
	}
	return nil
}

// finishWorker commits every third active snapshot (checking the commit in
// a view) and removes what the worker made.
func finishWorker(ctx context.Context, d graph.Driver, i int, key string, view bool) error {
	if view || i%3 != 0 {
		return d.Remove(ctx, key)
	}
	name := key + "-committed"
	if err := d.Commit(ctx, name, key); err != nil {
		return err
	}
	info, err := d.Stat(ctx, name)
	if err != nil {
		return err
	}
	if info.Kind != graph.KindCommitted || info.Parent != "base" {
		return fmt.Errorf("stat %s after commit: %+v", name, info)
	}
	return d.Remove(ctx, name)
}
