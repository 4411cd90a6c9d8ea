package vfs

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/unionstack/unionstack/graph"
)

// DiskUsage walks the tree dir and counts its inodes (each hard-linked
// inode once, dir itself included) and the bytes they take on disk
// (st_blocks * 512).
func DiskUsage(ctx context.Context, dir string) (graph.Usage, error) {
	var u graph.Usage
	seen := make(map[fileID]bool)
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			id := fileID{uint64(st.Dev), st.Ino}
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		u.Inodes++
		u.Size += st.Blocks * 512
		return nil
	})
	return u, err
}
