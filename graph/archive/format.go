// Package archive converts between OCI layer tars and directories: it
// unpacks layers (Apply), writes diffs (Diff, WriteLayer), converts
// whiteouts between the aufs form that OCI tars use and overlayfs's form,
// and detects compression from the bytes. It imports nothing else of this
// module.
package archive

// Format says how a directory stores deletions and opaque directories.
type Format int

const (
	// FormatTree is a full, merged tree: a whiteout is applied by deleting
	// what it names, an opaque directory by emptying it. There are no
	// whiteout markers on disk. (vfs snapshots, mounted rootfs)
	FormatTree Format = iota
	// FormatAUFS keeps whiteouts as aufs and OCI tars do: an empty file
	// ".wh.NAME" deletes NAME, a file ".wh..wh..opq" makes its directory
	// opaque. (the fuse driver's branches)
	FormatAUFS
	// FormatOverlay keeps whiteouts as kernel overlayfs does: a 0/0
	// character device deletes its name, the xattr
	// trusted.overlay.opaque=y makes a directory opaque.
	FormatOverlay
	// FormatOverlayUser is FormatOverlay with user.overlay.* xattrs
	// (overlayfs mounted with userxattr).
	FormatOverlayUser
)

// The aufs/OCI whiteout names.
const (
	WhiteoutPrefix = ".wh."
	WhiteoutOpaque = ".wh..wh..opq"
	// WhiteoutMetaPrefix prefixes aufs's own metadata entries (".wh..wh.plnk",
	// ".wh..wh.aufs"), which are never layer content.
	WhiteoutMetaPrefix = ".wh..wh."
)

// String names the format.
func (f Format) String() string {
	switch f {
	case FormatTree:
		return "tree"
	case FormatAUFS:
		return "aufs"
	case FormatOverlay:
		return "overlay"
	case FormatOverlayUser:
		return "overlay-userxattr"
	}
	return "unknown"
}
