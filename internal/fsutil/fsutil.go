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

// DiskUsage walks dir and counts its inodes (each hard-linked inode once,
// dir itself included) and the bytes they take on disk (st_blocks * 512),
// without following symlinks.
func DiskUsage(ctx context.Context, dir string) (Usage, error) {
	type fileID struct{ dev, ino uint64 }
	var u Usage
	seen := make(map[fileID]bool)
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		if st.Nlink > 1 && st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
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

// WriteFileSync writes data to name and fsyncs it before closing, so the
// content is on disk before a rename or a metadata record points to it.
func WriteFileSync(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
