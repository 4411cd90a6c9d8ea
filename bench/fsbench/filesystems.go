package fsbench

import (
	"fmt"
	"strings"
)

// Names are the filesystems that can be compared, in report order.
var Names = []string{Overlay, FuseOverlayFS, UnionFSFuse, UnionFS, UnionFSCached, UnionFSFast}

// Select returns the filesystems named in only (all of Names when only is
// empty), in report order; ours is served by the unionctl binary at
// unionctlExe. An unknown name is an error.
func Select(only []string, unionctlExe string) ([]FS, error) {
	want := map[string]bool{}
	for _, n := range only {
		n = strings.TrimSpace(n)
		if !isName(n) {
			return nil, fmt.Errorf("unknown filesystem %q (known: %s)", n, strings.Join(Names, ", "))
		}
		want[n] = true
	}
	var out []FS
	for _, n := range Names {
		if len(want) > 0 && !want[n] {
			continue
		}
		out = append(out, newFS(n, unionctlExe))
	}
	return out, nil
}

// isName reports whether n is one of Names.
func isName(n string) bool {
	for _, k := range Names {
		if n == k {
			return true
		}
	}
	return false
}

// newFS returns the filesystem called name (one of Names).
func newFS(name, unionctlExe string) FS {
	switch name {
	case Overlay:
		return OverlayFS{}
	case FuseOverlayFS:
		return NewFuseOverlayFS()
	case UnionFSFuse:
		return NewUnionFSFuse()
	case UnionFSCached:
		return &UnionctlFS{Exe: unionctlExe, Label: UnionFSCached, Opts: "udba=none"}
	case UnionFSFast:
		return &UnionctlFS{Exe: unionctlExe, Label: UnionFSFast, Opts: "udba=notify,passthrough=all"}
	default:
		return &UnionctlFS{Exe: unionctlExe}
	}
}
