// Package fsutil holds small filesystem helpers the drivers share.
package fsutil

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Usage is what a directory tree takes on disk.
type Usage struct {
	Inodes int64 // inodes, each hard-linked inode once
	Size   int64 // bytes of allocated blocks
}

// DiskUsage walks dir and counts its inodes (hard links once) and
// allocated bytes (st_blocks * 512), without following symlinks.
func DiskUsage(ctx context.Context, dir string) (Usage, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var u Usage
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return errors.New("no stat data for " + path)
		}
		key := inode{uint64(st.Dev), st.Ino}
		if seen[key] {
			return nil
		}
		seen[key] = true
		u.Inodes++
		u.Size += st.Blocks * 512
		return nil
	})
	return u, err
}

// RemoveAll removes path like os.RemoveAll, first making directories
// writable so a tree with read-only directories (as layers may carry) goes
// too. A missing path is not an error.
func RemoveAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}
