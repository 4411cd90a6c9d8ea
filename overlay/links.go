package overlay

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/unionstack/unionstack/internal/fsutil"
)

// linkDirName is the directory of short links, linkFileName the file in a
// snapshot's directory naming its link.
const (
	linkDirName  = "l"
	linkFileName = "link"
	shortIDLen   = 10 // base32 characters: 50 random bits, collisions are retried
)

const shortIDAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// newShortID returns a random lower-case base32 name of shortIDLen characters.
func newShortID() (string, error) {
	b := make([]byte, shortIDLen)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = shortIDAlphabet[b[i]&31]
	}
	return string(b), nil
}

// makeLink creates root/l/SHORT -> ../snapshots/ID/fs under a fresh random
// name and records the name in the snapshot's link file.
func (b *backend) makeLink(id string) (string, error) {
	for range 10 {
		short, err := newShortID()
		if err != nil {
			return "", err
		}
		err = os.Symlink(filepath.Join("..", snapshotsDirName, id, fsDirName), filepath.Join(b.root, linkDirName, short))
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if err := fsutil.WriteFileSync(filepath.Join(b.snapshotDir(id), linkFileName), []byte(short), 0o644); err != nil {
			os.Remove(filepath.Join(b.root, linkDirName, short))
			return "", err
		}
		b.linksMu.Lock()
		b.links[id] = short
		b.linksMu.Unlock()
		return short, nil
	}
	return "", fmt.Errorf("no free short link name after 10 tries")
}

// lowerPath returns the short path of snapshot id's fs dir as a lower
// layer: root/l/SHORT, or root/snapshots/ID/fs when id has no link.
func (b *backend) lowerPath(id string) string {
	b.linksMu.Lock()
	short, ok := b.links[id]
	b.linksMu.Unlock()
	if !ok {
		data, err := os.ReadFile(filepath.Join(b.snapshotDir(id), linkFileName))
		short = strings.TrimSpace(string(data))
		if err != nil || !validShortID(short) {
			return b.fsDir(id)
		}
		b.linksMu.Lock()
		b.links[id] = short
		b.linksMu.Unlock()
	}
	return filepath.Join(b.root, linkDirName, short)
}

// removeLink removes snapshot id's short link, if it has one.
func (b *backend) removeLink(id string) error {
	b.linksMu.Lock()
	short, ok := b.links[id]
	delete(b.links, id)
	b.linksMu.Unlock()
	if !ok {
		data, err := os.ReadFile(filepath.Join(b.snapshotDir(id), linkFileName))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		short = strings.TrimSpace(string(data))
	}
	if !validShortID(short) {
		return nil
	}
	if err := os.Remove(filepath.Join(b.root, linkDirName, short)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// validShortID says whether s could be a name made by newShortID.
func validShortID(s string) bool {
	if len(s) != shortIDLen {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune(shortIDAlphabet, c) {
			return false
		}
	}
	return true
}
