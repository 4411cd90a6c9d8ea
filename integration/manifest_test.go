package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/unionstack/unionstack/graph/graphtest"
)

// manifest describes a tree, a line per path (graphtest.Manifest).
type manifest []string

// manifestOptions say what a manifest leaves out.
type manifestOptions struct {
	// NoDirMtimes leaves all mtimes out (see sameTree's comment).
	NoDirMtimes bool
}

// internalXattrs belong to a driver's own bookkeeping rather than to the
// tree: overlayfs's (trusted.overlay.*, user.overlay.* with userxattr)
// never show through a mount but do on a lower dir bound directly;
// security.selinux is the host's labelling.
var internalXattrs = []string{"trusted.overlay.", "user.overlay.", "security.selinux"}

// treeManifest describes root: path, type, mode, owner, mtime (but the
// root's own: no layer sets it, each driver makes the directory itself),
// xattrs, link target, device numbers, content, link counts and hard-link
// groups.
func treeManifest(root string, opts manifestOptions) (manifest, error) {
	return graphtest.Manifest(root, graphtest.ManifestOptions{Times: !opts.NoDirMtimes, IgnoreXattrPrefixes: internalXattrs})
}

// hash is a digest of the whole manifest.
func (m manifest) hash() string {
	sum := sha256.Sum256([]byte(strings.Join(m, "\n")))
	return hex.EncodeToString(sum[:])
}

// diffManifests lists the lines in which got differs from want.
func diffManifests(want, got manifest) []string { return graphtest.DiffManifests(want, got) }
