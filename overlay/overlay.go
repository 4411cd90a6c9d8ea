// Package overlay is the kernel overlayfs graph driver. A committed
// snapshot is a lower directory, an active snapshot an upper and a work
// directory on top of its parents, a view a read-only mount (a read-only
// bind mount when it has a single layer). Commit is metadata only.
//
// On disk, under the driver's root:
//
//	metadata.db              the snapshot tree (kept by graph.NewDriver)
//	snapshots/ID/fs          the snapshot's own files (overlay's upper dir)
//	snapshots/ID/work        overlay's work dir (active snapshots only)
//	snapshots/ID/link        the snapshot's short link name
//	l/SHORT -> ../snapshots/ID/fs
//
// The short links (Docker's l/ idea) keep each lower layer's path short,
// so that deep chains fit in one page of mount data: each layer takes
// len(root)+14 bytes, so with a root of 30 characters about 90 layers fit
// in a 4 KiB page. Deeper chains, whose option string would exceed a page,
// are returned as one "lowerdir+=PATH" option per layer, which
// graph.MountAll mounts through the new mount API (fsopen/fsconfig,
// kernel 6.8+). The kernel stacks at most MaxDepth lower layers.
//
// Every overlay mount says index=off (a committed layer is a lower dir of
// many stacks, which index=on would refuse), metacopy=off (so that upper
// dirs hold whole files) and redirect_dir=on (directory renames across
// layers work) or, with OptRedirectDir=off, redirect_dir=follow. This needs
// kernel 4.19 or later.
package overlay

import (
	"github.com/unionstack/unionstack/graph"
)

// Name is the name the driver registers under.
const Name = "overlay"

// MaxDepth is the deepest parent chain the driver mounts: overlayfs stacks
// at most 500 lower layers (OVL_MAX_STACK; measured on kernel 6.18: the
// 501st "lowerdir+" is refused with EINVAL). An active snapshot may sit on
// top of MaxDepth committed layers, its upper dir is not counted.
const MaxDepth = 500

// OptRedirectDir is the driver option that turns overlayfs's redirect_dir
// feature "on" or "off". It defaults to on where the kernel allows it:
// without it, renaming a directory that came from a lower layer fails with
// EXDEV.
const OptRedirectDir = "overlay.redirect_dir"

func init() {
	graph.Register(Name, graph.Registration{
		New:   New,
		Probe: Probe,
		Doc:   "kernel overlayfs: layers stacked as lower dirs, native diff of the upper dir",
	})
}
