package testimage

import (
	"archive/tar"
	"bytes"
	"time"

	"github.com/opencontainers/go-digest"
)

// Epoch is the modification time of every entry a TarBuilder writes, so
// layers are the same bytes on every run.
var Epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// TarBuilder writes an OCI layer tar entry by entry, deterministically
// (PAX format, fixed times). Methods panic on a write error, which for an
// in-memory buffer only a bad header causes: a bug in the test.
type TarBuilder struct {
	buf bytes.Buffer
	tw  *tar.Writer
}

// NewTarBuilder returns an empty layer.
func NewTarBuilder() *TarBuilder {
	b := &TarBuilder{}
	b.tw = tar.NewWriter(&b.buf)
	return b
}

// Entry is the optional metadata of an entry; zero means root-owned, no
// xattrs.
type Entry struct {
	UID, GID int
	Xattrs   map[string]string
}

func (b *TarBuilder) write(h *tar.Header, e []Entry, data []byte) *TarBuilder {
	h.ModTime = Epoch
	h.Format = tar.FormatPAX
	for _, x := range e {
		h.Uid, h.Gid = x.UID, x.GID
		for k, v := range x.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	if err := b.tw.WriteHeader(h); err != nil {
		panic("testimage: " + h.Name + ": " + err.Error())
	}
	if len(data) > 0 {
		if _, err := b.tw.Write(data); err != nil {
			panic("testimage: " + h.Name + ": " + err.Error())
		}
	}
	return b
}

// Dir adds a directory (name without trailing slash).
func (b *TarBuilder) Dir(name string, mode int64, e ...Entry) *TarBuilder {
	return b.write(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}, e, nil)
}

// File adds a regular file.
func (b *TarBuilder) File(name string, mode int64, data []byte, e ...Entry) *TarBuilder {
	return b.write(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, e, data)
}

// Symlink adds a symbolic link name -> target.
func (b *TarBuilder) Symlink(name, target string, e ...Entry) *TarBuilder {
	return b.write(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, e, nil)
}

// Hardlink adds a hard link name to the earlier entry target.
func (b *TarBuilder) Hardlink(name, target string, e ...Entry) *TarBuilder {
	return b.write(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}, e, nil)
}

// Fifo adds a named pipe.
func (b *TarBuilder) Fifo(name string, mode int64, e ...Entry) *TarBuilder {
	return b.write(&tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: mode}, e, nil)
}

// Whiteout deletes name of the layers below (dir/.wh.base).
func (b *TarBuilder) Whiteout(name string) *TarBuilder {
	dir, base := splitName(name)
	return b.File(dir+".wh."+base, 0o644, nil)
}

// Opaque makes directory dir opaque (dir/.wh..wh..opq).
func (b *TarBuilder) Opaque(dir string) *TarBuilder {
	return b.File(dir+"/.wh..wh..opq", 0o644, nil)
}

// Bytes finishes the tar and returns it.
func (b *TarBuilder) Bytes() []byte {
	if err := b.tw.Close(); err != nil {
		panic("testimage: " + err.Error())
	}
	return b.buf.Bytes()
}

// Layer finishes the tar and returns it as a Layer.
func (b *TarBuilder) Layer() Layer {
	data := b.Bytes()
	return Layer{Tar: data, DiffID: digest.FromBytes(data)}
}

// splitName splits "a/b/c" into "a/b/" and "c".
func splitName(name string) (string, string) {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			return name[:i+1], name[i+1:]
		}
	}
	return "", name
}
