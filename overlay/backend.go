package overlay

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/fsutil"
)

// Directory names under the driver's root and in a snapshot's directory.
const (
	snapshotsDirName = "snapshots"
	fsDirName        = "fs"
	workDirName      = "work"
)

// backend keeps the data of overlay snapshots; graph.NewDriver keeps their
// metadata. It implements graph.Backend and graph.BackendLayerDirer.
type backend struct {
	root     string // absolute
	redirect string // value of the redirect_dir mount option: "on" or "follow"
	pageSize int    // the legacy mount(2) data limit
	lowerAdd bool   // the kernel takes lowerdir+ (new mount API)

	linksMu sync.Mutex
	links   map[string]string // id -> short link name, a cache of the link files
}

var (
	_ graph.Backend           = (*backend)(nil)
	_ graph.BackendLayerDirer = (*backend)(nil)
)

// New opens the overlay driver with its data under root. The only option
// is OptRedirectDir ("on" or "off"; default on where the kernel allows).
// It fails with an error wrapping graph.ErrNotSupported when this host
// cannot run overlayfs under root (see Probe).
func New(root string, options map[string]string) (graph.Driver, error) {
	b, err := newBackend(root, options)
	if err != nil {
		return nil, err
	}
	d, err := graph.NewDriver(b.root, b)
	if err != nil {
		return nil, graph.Wrap(err, "open overlay", root)
	}
	return d, nil
}

// newBackend validates root and options, probes the host and makes the
// driver's directories.
func newBackend(root string, options map[string]string) (*backend, error) {
	const op = "open overlay"
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, graph.Errorf(graph.ErrInvalidArgument, op, root, "%v", err)
	}
	if strings.ContainsAny(abs, ",:\\") {
		return nil, graph.Errorf(graph.ErrInvalidArgument, op, root, "root must not contain ',', ':' or '\\' (overlay mount options cannot hold them)")
	}
	redirect := ""
	for k, v := range options {
		switch k {
		case OptRedirectDir:
			switch v {
			case "on", "true":
				redirect = "on"
			case "off", "false":
				redirect = "off"
			default:
				return nil, graph.Errorf(graph.ErrInvalidArgument, op, root, "option %s=%q: want on or off", k, v)
			}
		default:
			return nil, graph.Errorf(graph.ErrInvalidArgument, op, root, "unknown option %q (known: %s)", k, OptRedirectDir)
		}
	}
	features, err := Probe(abs)
	if err != nil {
		return nil, err
	}
	supported := features[FeatureRedirectDir] == "on"
	switch {
	case redirect == "on" && !supported:
		return nil, graph.Errorf(graph.ErrNotSupported, op, root, "%s=on, but this kernel or backing filesystem cannot mount overlay with redirect_dir=on", OptRedirectDir)
	case redirect == "" && supported:
		redirect = "on"
	case redirect == "" || redirect == "off":
		// Follow redirects that layers already hold, create no new ones:
		// renaming a lower directory then fails with EXDEV.
		redirect = "follow"
	}
	for _, d := range []string{snapshotsDirName, linkDirName} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, graph.Wrap(err, op, root)
		}
	}
	return &backend{
		root:     abs,
		redirect: redirect,
		pageSize: os.Getpagesize(),
		lowerAdd: features[FeatureLowerdirAdd] == "on",
		links:    map[string]string{},
	}, nil
}

// snapshotDir is the directory of snapshot id's data.
func (b *backend) snapshotDir(id string) string {
	return filepath.Join(b.root, snapshotsDirName, id)
}

// fsDir is snapshot id's own tree: its upper dir, or a lower dir once
// committed.
func (b *backend) fsDir(id string) string {
	return filepath.Join(b.root, snapshotsDirName, id, fsDirName)
}

// workDir is overlay's work dir for the active snapshot id.
func (b *backend) workDir(id string) string {
	return filepath.Join(b.root, snapshotsDirName, id, workDirName)
}

// validID refuses ids that are not a single plain path element.
func validID(op, id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || strings.HasPrefix(id, ".") {
		return graph.Errorf(graph.ErrInvalidArgument, op, id, "bad snapshot id")
	}
	return nil
}

// Create makes snapshots/ID/fs and, for an active snapshot, its work dir
// and short link. On failure it leaves nothing behind.
func (b *backend) Create(ctx context.Context, s graph.Snapshot) (err error) {
	const op = "overlay create"
	if err := validID(op, s.ID); err != nil {
		return err
	}
	if len(s.ParentIDs) > MaxDepth {
		return graph.Errorf(graph.ErrNotSupported, op, s.ID, "chain of %d layers: overlayfs stacks at most %d", len(s.ParentIDs), MaxDepth)
	}
	if s.Kind != graph.KindActive && s.Kind != graph.KindView {
		return graph.Errorf(graph.ErrInvalidArgument, op, s.ID, "cannot create a %v snapshot", s.Kind)
	}
	for _, p := range s.ParentIDs {
		if err := validID(op, p); err != nil {
			return err
		}
	}
	dir := b.snapshotDir(s.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return graph.Errorf(graph.ErrAlreadyExists, op, s.ID, "data directory %s exists", dir)
		}
		return graph.Wrap(err, op, s.ID)
	}
	defer func() {
		if err != nil {
			b.removeLink(s.ID)
			os.RemoveAll(dir)
		}
	}()
	if err := os.Mkdir(b.fsDir(s.ID), 0o755); err != nil {
		return graph.Wrap(err, op, s.ID)
	}
	if s.Kind == graph.KindView {
		return nil
	}
	if err := os.Mkdir(b.workDir(s.ID), 0o700); err != nil {
		return graph.Wrap(err, op, s.ID)
	}
	if _, err := b.makeLink(s.ID); err != nil {
		return graph.Wrap(err, op, s.ID)
	}
	return nil
}

// Commit has nothing to do: the upper dir becomes a lower dir as it is.
func (b *backend) Commit(ctx context.Context, s graph.Snapshot) error {
	if err := validID("overlay commit", s.ID); err != nil {
		return err
	}
	if _, err := os.Stat(b.fsDir(s.ID)); err != nil {
		return graph.Wrap(err, "overlay commit", s.ID)
	}
	return nil
}

// Remove deletes snapshot id's short link and data; missing or partly
// created data is not an error.
func (b *backend) Remove(ctx context.Context, id string) error {
	const op = "overlay remove"
	if err := validID(op, id); err != nil {
		return err
	}
	if err := b.removeLink(id); err != nil {
		return graph.Wrap(err, op, id)
	}
	if err := fsutil.RemoveAll(b.snapshotDir(id)); err != nil {
		return graph.Wrap(err, op, id)
	}
	return nil
}

// Cleanup removes the data of ids not in live, and short links whose
// snapshot is gone.
func (b *backend) Cleanup(ctx context.Context, live map[string]bool) error {
	const op = "overlay cleanup"
	entries, err := os.ReadDir(filepath.Join(b.root, snapshotsDirName))
	if err != nil {
		return graph.Wrap(err, op, b.root)
	}
	var errs []error
	for _, e := range entries {
		if !live[e.Name()] {
			if validID(op, e.Name()) != nil {
				errs = append(errs, graph.Wrap(fsutil.RemoveAll(filepath.Join(b.root, snapshotsDirName, e.Name())), op, e.Name()))
				continue
			}
			errs = append(errs, b.Remove(ctx, e.Name()))
		}
	}
	links, err := os.ReadDir(filepath.Join(b.root, linkDirName))
	if err != nil {
		return graph.Wrap(err, op, b.root)
	}
	for _, l := range links {
		p := filepath.Join(b.root, linkDirName, l.Name())
		target, err := os.Readlink(p)
		id := filepath.Base(filepath.Dir(target))
		if err == nil && live[id] {
			if _, err := os.Stat(p); err == nil {
				continue
			}
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, graph.Wrap(err, op, p))
		}
	}
	return errors.Join(errs...)
}

// Close has nothing to release.
func (b *backend) Close() error { return nil }

// MaxDepth is the deepest parent chain the kernel's overlayfs stacks
// (graph.DepthLimiter).
func (b *backend) MaxDepth() int { return MaxDepth }
