package graph

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// mountInfo is one line of /proc/self/mountinfo.
type mountInfo struct {
	ID         int
	Parent     int
	MountPoint string
	FSType     string
	Source     string
}

// readMountinfo reads the mount table of this process's mount namespace.
func readMountinfo() ([]mountInfo, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, errMountinfo(err)
	}
	return parseMountinfo(b)
}

// parseMountinfo parses mountinfo lines (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func parseMountinfo(b []byte) ([]mountInfo, error) {
	var out []mountInfo
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		fields := strings.Split(line, " ")
		sep := slices.Index(fields, "-")
		if len(fields) < 10 || sep < 6 || sep+2 >= len(fields) {
			return nil, errMountinfo(fmt.Errorf("malformed line %q", line))
		}
		id, err1 := strconv.Atoi(fields[0])
		parent, err2 := strconv.Atoi(fields[1])
		if err1 != nil || err2 != nil {
			return nil, errMountinfo(fmt.Errorf("malformed line %q", line))
		}
		out = append(out, mountInfo{
			ID:         id,
			Parent:     parent,
			MountPoint: unescapeMountinfo(fields[4]),
			FSType:     unescapeMountinfo(fields[sep+1]),
			Source:     unescapeMountinfo(fields[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, errMountinfo(err)
	}
	return out, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, ...) of
// mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// mountsUnder returns the mounts at root and below, in the order to
// unmount them: deepest first, and of mounts stacked on one path the top
// (latest) first.
func mountsUnder(root string) ([]mountInfo, error) {
	all, err := readMountinfo()
	if err != nil {
		return nil, err
	}
	return selectUnder(all, root), nil
}

// selectUnder picks the mounts at root and below from all (mountinfo
// order) and sorts them for unmounting.
func selectUnder(all []mountInfo, root string) []mountInfo {
	prefix := strings.TrimSuffix(root, "/") + "/"
	var out []mountInfo
	for i := len(all) - 1; i >= 0; i-- { // latest first
		mp := all[i].MountPoint
		if mp == root || strings.HasPrefix(mp, prefix) {
			out = append(out, all[i])
		}
	}
	slices.SortStableFunc(out, func(a, b mountInfo) int {
		return strings.Count(b.MountPoint, "/") - strings.Count(a.MountPoint, "/")
	})
	return out
}
