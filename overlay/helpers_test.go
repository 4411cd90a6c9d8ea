package overlay

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/testenv"
)

// newTestDriver opens the overlay driver on a fresh root, or skips (fails
// under UNIONSTACK_REQUIRE_ALL=1) when this host cannot run it.
func newTestDriver(t testing.TB, options map[string]string) (graph.Driver, string) {
	t.Helper()
	testenv.NeedRoot(t)
	root := t.TempDir()
	d, err := New(root, options)
	if errors.Is(err, graph.ErrNotSupported) {
		testenv.Need(t, false, err.Error())
	}
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d, root
}

// mountTest mounts mounts at a fresh directory and unmounts it at cleanup.
func mountTest(t testing.TB, mounts []graph.Mount) string {
	t.Helper()
	target := t.TempDir()
	if err := graph.MountAll(mounts, target); err != nil {
		testenv.Need(t, !errors.Is(err, graph.ErrNotImplemented), "graph.MountAll: "+err.Error())
		t.Fatalf("MountAll %+v: %v", mounts, err)
	}
	t.Cleanup(func() {
		if err := graph.UnmountAll(target); err != nil {
			t.Errorf("UnmountAll %s: %v", target, err)
		}
	})
	return target
}

// layerDir returns the upper dir of the active snapshot key.
func layerDir(t testing.TB, d graph.Driver, key string) string {
	t.Helper()
	ld, ok := d.(graph.LayerDirer)
	if !ok {
		t.Fatalf("overlay driver is not a graph.LayerDirer")
	}
	dir, _, err := ld.LayerDir(context.Background(), key)
	if err != nil {
		t.Fatalf("LayerDir %s: %v", key, err)
	}
	return dir
}

// commitLayer makes the committed snapshot name on parent holding files
// (path -> content), written straight into its upper dir.
func commitLayer(t testing.TB, d graph.Driver, name, parent string, files map[string]string) {
	t.Helper()
	ctx := context.Background()
	key := name + "-active"
	if _, err := d.Prepare(ctx, key, parent); err != nil {
		t.Fatalf("Prepare %s on %q: %v", key, parent, err)
	}
	writeFiles(t, layerDir(t, d, key), files)
	if err := d.Commit(ctx, name, key); err != nil {
		t.Fatalf("Commit %s: %v", name, err)
	}
}

// writeFiles writes files (path -> content) below dir, making parents.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readFile reads a file, failing the test when it cannot.
func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(data)
}

// treeSummary describes every entry of the tree at dir, one line each:
// path, type and mode, owner, size, device, content hash or link target,
// mtime for non-directories, and xattrs. Two trees with the same summary
// are the same for a container.
func treeSummary(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d", rel, st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" size=%d sha=%x mtime=%d", st.Size, h.Sum(nil)[:8], st.Mtim.Nano())
		case unix.S_IFLNK:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		buf := make([]byte, 4096)
		names, err := listXattrs(path, &buf)
		if err != nil {
			return err
		}
		slices.Sort(names)
		for _, n := range names {
			v := make([]byte, 4096)
			k, err := unix.Lgetxattr(path, n, v)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %s=%q", n, v[:k])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatalf("summary of %s: %v", dir, err)
	}
	return strings.Join(lines, "\n")
}

// optionsHave says whether one of opts starts with prefix.
func optionsHave(opts []string, prefix string) bool {
	return slices.ContainsFunc(opts, func(o string) bool { return strings.HasPrefix(o, prefix) })
}

// mknodWhiteout makes a 0/0 character device at path.
func mknodWhiteout(path string) error {
	return unix.Mknod(path, unix.S_IFCHR|0o600, 0)
}
