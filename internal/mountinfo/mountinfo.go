// Package mountinfo reads the mount table of a process's mount namespace
// (/proc/PID/mountinfo, proc(5)). graph, unionfs and the tests share it.
package mountinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Entry is one line of the mount table.
type Entry struct {
	ID         int
	Parent     int
	MountPoint string
	FSType     string
	Source     string
}

// Read returns the mount table of process pid's mount namespace (0: this
// process), in the kernel's order (a mount after the ones it stacks on).
func Read(pid int) ([]Entry, error) {
	path := "/proc/self/mountinfo"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/mountinfo"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return Parse(b)
}

// Parse parses mountinfo lines:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func Parse(b []byte) ([]Entry, error) {
	var out []Entry
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
			return nil, fmt.Errorf("read mount table: malformed line %q", line)
		}
		id, err1 := strconv.Atoi(fields[0])
		parent, err2 := strconv.Atoi(fields[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("read mount table: malformed line %q", line)
		}
		out = append(out, Entry{
			ID:         id,
			Parent:     parent,
			MountPoint: Unescape(fields[4]),
			FSType:     Unescape(fields[sep+1]),
			Source:     Unescape(fields[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

// Unescape undoes the octal escapes (\040 for a space, ...) of mountinfo
// fields.
func Unescape(s string) string {
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

// Under picks the mounts at root and below from all (kernel order) and
// sorts them for unmounting: deepest first, and of mounts stacked on one
// path the top (latest) first.
func Under(all []Entry, root string) []Entry {
	prefix := strings.TrimSuffix(root, "/") + "/"
	var out []Entry
	for i := len(all) - 1; i >= 0; i-- { // latest first
		mp := all[i].MountPoint
		if mp == root || strings.HasPrefix(mp, prefix) {
			out = append(out, all[i])
		}
	}
	slices.SortStableFunc(out, func(a, b Entry) int {
		return strings.Count(b.MountPoint, "/") - strings.Count(a.MountPoint, "/")
	})
	return out
}

// Top returns the topmost mount at mountpoint, if any.
func Top(all []Entry, mountpoint string) (Entry, bool) {
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].MountPoint == mountpoint {
			return all[i], true
		}
	}
	return Entry{}, false
}
