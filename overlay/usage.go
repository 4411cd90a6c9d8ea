package overlay

import (
	"context"

	"github.com/unionstack/unionstack/graph"
	"github.com/unionstack/unionstack/internal/fsutil"
)

// Usage measures s's own fs dir (its upper dir) like du: its inodes,
// counting hard links once and the directory itself, and the bytes they
// take on disk (st_blocks).
func (b *backend) Usage(ctx context.Context, s graph.Snapshot) (graph.Usage, error) {
	const op = "overlay usage"
	if err := validID(op, s.ID); err != nil {
		return graph.Usage{}, err
	}
	u, err := fsutil.DiskUsage(ctx, b.fsDir(s.ID))
	if err != nil {
		return graph.Usage{}, graph.Wrap(err, op, s.ID)
	}
	return graph.Usage{Inodes: u.Inodes, Size: u.Size}, nil
}
