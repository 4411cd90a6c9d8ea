package fsbench

import (
	"context"
	"fmt"
	"strings"

	"github.com/unionstack/unionstack/unionfs"
)

// InProcessFS is unionstack's unionfs served by unionfs.Mount inside this
// process, with the options `unionctl mount` uses by default. The CLI
// measures the real daemon (UnionctlFS); this is for the package's tests
// and benchmarks, whose binary is not unionctl.
type InProcessFS struct{}

// inProcessFS returns an InProcessFS.
func inProcessFS() FS { return InProcessFS{} }

// Name returns "unionfs".
func (InProcessFS) Name() string { return UnionFS }

// Available checks for /dev/fuse.
func (InProcessFS) Available() error { return fuseAvailable() }

// Mount mounts the union in this process.
func (InProcessFS) Mount(ctx context.Context, b Branches) (Mounted, error) {
	if strings.ContainsAny(b.Upper+b.Lower, ":=,") {
		return nil, fmt.Errorf("mount %s: branch paths %s, %s hold one of ':', '=' or ','", UnionFS, b.Upper, b.Lower)
	}
	spec, err := unionfs.ParseOptions("dirs=" + b.Upper + "=rw:" + b.Lower + "=ro")
	if err != nil {
		return nil, fmt.Errorf("mount %s at %s: %w", UnionFS, b.Mnt, err)
	}
	srv, err := unionfs.Mount(spec.Branches, b.Mnt, spec.Options)
	if err != nil {
		return nil, fmt.Errorf("mount %s at %s: %w", UnionFS, b.Mnt, err)
	}
	return unmountFunc(func() error {
		if err := srv.Unmount(); err != nil {
			return fmt.Errorf("unmount %s: %w", b.Mnt, err)
		}
		return nil
	}), nil
}
