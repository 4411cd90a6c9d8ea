package fsbench

import (
	"fmt"
	"math"
)

// Full-scale sizes of the workloads (scale 1.0).
const (
	fullSeqBytes    = 1 << 30   // sequential and random read file
	fullRandReads   = 20000     // 4 KiB preads
	fullStatFiles   = 50000     // files in the stat-walk tree
	fullCreateFiles = 10000     // files created in the union
	fullUnlinkFiles = 10000     // lower files unlinked through the union
	fullCopyUpBytes = 256 << 20 // file copied up by a one-byte append

	// MaxScale is the largest accepted scale factor.
	MaxScale = 4.0
	// MaxRepeat is the largest accepted Sizes.Repeat.
	MaxRepeat = 10
	// filesPerDir is how many files each directory of the stat tree holds.
	filesPerDir = 100
	// seqReadBlock is the read size of the sequential read.
	seqReadBlock = 1 << 20
	// randReadBlock is the read size of the random read.
	randReadBlock = 4096
)

// Sizes are the byte sizes and counts of one run, derived from a scale.
type Sizes struct {
	Scale       float64 `json:"scale"`
	SeqBytes    int64   `json:"seq_bytes"`    // size of the read file (whole MiB)
	RandReads   int     `json:"rand_reads"`   // number of 4 KiB random preads
	StatFiles   int     `json:"stat_files"`   // files walked by the stat walk
	CreateFiles int     `json:"create_files"` // files created
	UnlinkFiles int     `json:"unlink_files"` // lower files unlinked
	CopyUpBytes int64   `json:"copyup_bytes"` // size of the copied-up file (whole 4 KiB)
	// Repeat is how many times each workload runs (the best time counts);
	// the lower branch holds a fresh target for each round of the
	// workloads that change the union.
	Repeat int `json:"repeat"`
}

// ForScale returns the sizes for scale (1.0 = the full benchmark: 1 GiB
// read, 20000 random reads, 50k files walked, 10k created and unlinked,
// 256 MiB copied up; 0.01 = 10 MiB and 500 files for a smoke run).
func ForScale(scale float64) (Sizes, error) {
	if math.IsNaN(scale) || scale <= 0 || scale > MaxScale {
		return Sizes{}, fmt.Errorf("scale %v: must be > 0 and <= %v", scale, MaxScale)
	}
	count := func(full int) int { return max(1, int(math.Round(float64(full)*scale))) }
	bytes := func(full, unit int64) int64 {
		return max(unit, int64(math.Round(float64(full)*scale/float64(unit)))*unit)
	}
	return Sizes{
		Scale:       scale,
		SeqBytes:    bytes(fullSeqBytes, 1<<20),
		RandReads:   count(fullRandReads),
		StatFiles:   count(fullStatFiles),
		CreateFiles: count(fullCreateFiles),
		UnlinkFiles: count(fullUnlinkFiles),
		CopyUpBytes: bytes(fullCopyUpBytes, 4096),
		Repeat:      1,
	}, nil
}

// scratchBytes estimates the disk space one filesystem's branches take
// by the end of its run: the read file, for each round a file to copy up
// and its copy, and half a KiB of inode and directory space for each
// file and whiteout.
func (sz Sizes) scratchBytes() int64 {
	r := int64(sz.rounds())
	files := int64(sz.StatFiles) + r*int64(sz.CreateFiles+2*sz.UnlinkFiles)
	return sz.SeqBytes + 2*r*sz.CopyUpBytes + files*512
}

// rounds is the number of rounds of sz: Repeat, at least 1.
func (sz Sizes) rounds() int { return max(1, sz.Repeat) }

// roundPath is the name of a workload target in round r: base itself in
// the first round, base.r after it.
func roundPath(base string, r int) string {
	if r == 0 {
		return base
	}
	return fmt.Sprintf("%s.%d", base, r)
}

// humanBytes formats n in the largest binary unit it reaches (GiB, MiB,
// KiB), with one decimal unless it is a whole multiple.
func humanBytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		switch {
		case n >= u.size && n%u.size == 0:
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		case n >= u.size:
			return fmt.Sprintf("%.1f %s", float64(n)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}
