// Package fsbench compares union filesystems side by side on the same
// branch contents: kernel overlayfs, fuse-overlayfs, unionfs-fuse and
// unionstack's own unionfs. Each filesystem gets freshly built, identical
// lower and upper branches in a scratch directory and a fresh mount per
// workload (page cache dropped before), so no filesystem profits from
// another's caches. Results are reported as a ratio to kernel overlayfs
// (overlay time / fs time: higher is better, 1.0 is as fast as the kernel).
//
// It needs root (mounts, /proc/sys/vm/drop_caches) and is what
// `unionctl bench fs` and the package's Go benchmarks run.
package fsbench
