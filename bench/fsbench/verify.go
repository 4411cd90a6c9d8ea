package fsbench

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// unionfsFuseMeta is the meta directory unionfs-fuse keeps (and shows) at
// the root of the union; it is not part of the compared tree.
const unionfsFuseMeta = ".unionfs-fuse"

// Verify checks, through the union mounted at b.Mnt after all workloads
// ran, that they did what they should, in every round: created files present,
// unlinked files gone, the copied-up file holding its data plus the
// appended byte, the read file and stat tree intact; and that the lower
// branch was not written. It returns the merged tree as sorted lines
// "path type size" for comparison with other filesystems.
func Verify(b Branches, sz Sizes) ([]string, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf("verify: "+format, args...)) }

	for r := range sz.rounds() {
		verifyRound(b, sz, r, fail)
	}
	if st, err := os.Stat(filepath.Join(b.Mnt, bigFile)); err != nil || st.Size() != sz.SeqBytes {
		fail("%s: %v, want %d bytes", bigFile, statSize(st, err), sz.SeqBytes)
	}
	tree, err := TreeListing(b.Mnt)
	if err != nil {
		fail("%v", err)
	} else if n := countPrefix(tree, treeDir+"/", " file "); n != sz.StatFiles {
		fail("%s holds %d files, want %d", treeDir, n, sz.StatFiles)
	}
	return tree, errors.Join(errs...)
}

// verifyRound checks the effects of round r of the workloads that change
// the union, calling fail for each problem.
func verifyRound(b Branches, sz Sizes, r int, fail func(format string, args ...any)) {
	created, unlinked, copied := roundPath(createDir, r), roundPath(unlinkDir, r), roundPath(copyUpFile, r)
	names, err := readDirNames(filepath.Join(b.Mnt, created))
	if err != nil {
		fail("%v", err)
	} else if want := wantNames(sz.CreateFiles); !slices.Equal(names, want) {
		fail("%s holds %d entries, want the %d created files", created, len(names), len(want))
	}
	if names, err := readDirNames(filepath.Join(b.Mnt, unlinked)); err != nil {
		fail("%v", err)
	} else if len(names) != 0 {
		fail("%s still lists %d of the %d unlinked files (first %q)", unlinked, len(names), sz.UnlinkFiles, names[0])
	}
	if _, err := os.Lstat(filepath.Join(b.Mnt, unlinked, fileName(0))); !errors.Is(err, os.ErrNotExist) {
		fail("unlinked %s/%s: lstat gives %v, want not exist", unlinked, fileName(0), err)
	}
	if got, n, err := fileSum(filepath.Join(b.Mnt, copied)); err != nil {
		fail("%v", err)
	} else if got != patternSum(sz.CopyUpBytes, []byte{appendByte}) {
		fail("%s: %d bytes with the wrong content after copy-up, want %d bytes: the original plus %q", copied, n, sz.CopyUpBytes+1, appendByte)
	}
	// The lower branch is read-only for the union: nothing may reach it.
	if got, n, err := fileSum(filepath.Join(b.Lower, copied)); err != nil || got != patternSum(sz.CopyUpBytes, nil) {
		fail("lower branch %s changed by the copy-up (%d bytes, %v)", copied, n, err)
	}
	if names, err := readDirNames(filepath.Join(b.Lower, unlinked)); err != nil || len(names) != sz.UnlinkFiles {
		fail("lower branch %s holds %d files (%v), want all %d still there", unlinked, len(names), err, sz.UnlinkFiles)
	}
	if _, err := os.Lstat(filepath.Join(b.Lower, created)); !errors.Is(err, os.ErrNotExist) {
		fail("lower branch has %s (%v): created files went to the read-only branch", created, err)
	}
}

// TreeListing walks the union at mnt and returns one sorted line per entry:
// "path type size" (size only for files, the target for symlinks). The
// unionfs-fuse meta directory at the root is left out.
func TreeListing(mnt string) ([]string, error) {
	var lines []string
	err := filepath.WalkDir(mnt, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mnt, path)
		if rel == "." {
			return nil
		}
		if rel == unionfsFuseMeta {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch m := info.Mode(); {
		case m.IsDir():
			lines = append(lines, rel+" dir -")
		case m.IsRegular():
			lines = append(lines, fmt.Sprintf("%s file %d", rel, info.Size()))
		case m&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			lines = append(lines, rel+" symlink "+target)
		default:
			lines = append(lines, fmt.Sprintf("%s other %v", rel, m))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", mnt, err)
	}
	sort.Strings(lines)
	return lines, nil
}

// DiffTrees describes the first difference between two tree listings, or
// returns "" when they are equal.
func DiffTrees(a, b []string) string {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			i++
			j++
		case a[i] < b[j]:
			return fmt.Sprintf("only in the first: %q", a[i])
		default:
			return fmt.Sprintf("only in the second: %q", b[j])
		}
	}
	switch {
	case i < len(a):
		return fmt.Sprintf("only in the first: %q", a[i])
	case j < len(b):
		return fmt.Sprintf("only in the second: %q", b[j])
	}
	return ""
}

// readDirNames lists dir, sorted.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("readdir %s: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}

// wantNames returns the names of the first n workload files, sorted.
func wantNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fileName(i)
	}
	return names
}

// fileSum returns the SHA-256 and size of the file at path.
func fileSum(path string) ([sha256.Size]byte, int64, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return sum, n, fmt.Errorf("read %s: %w", path, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, n, nil
}

// statSize describes a stat result for an error message.
func statSize(st os.FileInfo, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d bytes", st.Size())
}

// countPrefix counts the lines that start with prefix and contain sub.
func countPrefix(lines []string, prefix, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, sub) {
			n++
		}
	}
	return n
}
