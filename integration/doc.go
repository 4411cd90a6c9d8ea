// Package integration holds the cross-part tests of unionstack: the same
// image unpacked through every driver gives the same tree and exports the
// same layers, the unionctl binary end to end, and benchmarks that run the
// same workload through vfs, overlay and fuse side by side. It has no code
// of its own beyond this comment; everything is in its _test.go files.
package integration
