package fsbench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Paths inside the union (and the lower branch) that the workloads use.
const (
	bigFile    = "big.bin"    // sequential and random reads
	copyUpFile = "copyup.bin" // copied up by a one-byte append
	treeDir    = "tree"       // stat walk
	createDir  = "created"    // made in the union by the create workload
	unlinkDir  = "unlink"     // lower files the unlink workload removes
	appendByte = 'x'          // the byte the copy-up workload appends
)

// Branches are the directories of one filesystem under test.
type Branches struct {
	Lower string // read-only branch, holds the workload data
	Upper string // writable branch, empty at first
	Work  string // overlayfs/fuse-overlayfs work dir, on the upper's filesystem
	Mnt   string // mount point of the union
	Log   string // file that takes a FUSE daemon's output
}

// NewBranches makes empty lower, upper, work and mount directories under
// dir and fills the lower branch with the workload data for sz. The
// contents are the same, byte for byte, on every call.
func NewBranches(ctx context.Context, dir string, sz Sizes) (Branches, error) {
	b := Branches{
		Lower: filepath.Join(dir, "lower"),
		Upper: filepath.Join(dir, "upper"),
		Work:  filepath.Join(dir, "work"),
		Mnt:   filepath.Join(dir, "mnt"),
		Log:   filepath.Join(dir, "daemon.log"),
	}
	for _, d := range []string{b.Lower, b.Upper, b.Work, b.Mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return b, fmt.Errorf("build branches %s: %w", dir, err)
		}
	}
	if err := fillLower(ctx, b.Lower, sz); err != nil {
		return b, fmt.Errorf("build branches %s: %w", dir, err)
	}
	return b, nil
}

// fillLower writes the read file, the stat tree, and for each round a
// file to copy up and a directory of files to unlink.
func fillLower(ctx context.Context, lower string, sz Sizes) error {
	if err := writePattern(ctx, filepath.Join(lower, bigFile), sz.SeqBytes); err != nil {
		return err
	}
	for r := range sz.rounds() {
		if err := writePattern(ctx, filepath.Join(lower, roundPath(copyUpFile, r)), sz.CopyUpBytes); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(lower, treeDir), 0o755); err != nil {
		return err
	}
	for i := range sz.StatFiles {
		if i%filesPerDir == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := os.Mkdir(filepath.Join(lower, treeDir, statDirName(i)), 0o755); err != nil {
				return err
			}
		}
		if err := touch(filepath.Join(lower, treeDir, statDirName(i), fileName(i))); err != nil {
			return err
		}
	}
	for r := range sz.rounds() {
		dir := filepath.Join(lower, roundPath(unlinkDir, r))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		for i := range sz.UnlinkFiles {
			if i%1000 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := touch(filepath.Join(dir, fileName(i))); err != nil {
				return err
			}
		}
	}
	return nil
}

// statDirName is the stat-tree directory that holds file i.
func statDirName(i int) string { return fmt.Sprintf("d%04d", i/filesPerDir) }

// fileName is the name of the i-th file of a workload.
func fileName(i int) string { return fmt.Sprintf("f%06d", i) }

// touch creates an empty file.
func touch(path string) error {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return &os.PathError{Op: "create", Path: path, Err: err}
	}
	return unix.Close(fd)
}

// patternBlock is the 1 MiB block that data files repeat: incompressible,
// and the same in every run.
var patternBlock = func() []byte {
	r := rand.New(rand.NewPCG(0x756e696f6e, 0x737461636b))
	buf := make([]byte, 1<<20)
	for i := 0; i < len(buf); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			buf[i+j] = byte(v >> (8 * j))
		}
	}
	return buf
}()

// writePattern creates path holding size bytes of the repeated pattern.
func writePattern(ctx context.Context, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	for left := size; left > 0; {
		if err := ctx.Err(); err != nil {
			f.Close()
			return err
		}
		n := min(left, int64(len(patternBlock)))
		if _, err := f.Write(patternBlock[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

// patternSum is the SHA-256 of size pattern bytes followed by extra.
func patternSum(size int64, extra []byte) [sha256.Size]byte {
	h := sha256.New()
	for left := size; left > 0; {
		n := min(left, int64(len(patternBlock)))
		h.Write(patternBlock[:n])
		left -= n
	}
	h.Write(extra)
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
