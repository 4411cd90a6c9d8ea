package unionfs

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Mountpoint string
	FSType     string
	Source     string
}

// daemonUnionFSTypes are the file system types a union mount shows in
// /proc/self/mountinfo.
var daemonUnionFSTypes = map[string]bool{"fuse.unionctl": true, "fuse3.unionctl": true, "fuse.unionfs": true}

// daemonFindMount returns the topmost mount at mountpoint in this
// process's mount namespace, if any.
func daemonFindMount(mountpoint string) (mountEntry, bool, error) {
	return daemonFindMountIn(0, mountpoint)
}

// daemonFindMountIn returns the topmost mount at mountpoint in the mount
// namespace of process pid (0: this process), if any.
func daemonFindMountIn(pid int, mountpoint string) (mountEntry, bool, error) {
	path := "/proc/self/mountinfo"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/mountinfo"
	}
	f, err := os.Open(path)
	if err != nil {
		return mountEntry{}, false, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var found mountEntry
	ok := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		e, good := daemonParseMountinfoLine(sc.Text())
		if good && e.Mountpoint == mountpoint {
			found, ok = e, true
		}
	}
	if err := sc.Err(); err != nil {
		return mountEntry{}, false, fmt.Errorf("read mount table: %w", err)
	}
	return found, ok, nil
}

// daemonParseMountinfoLine parses one mountinfo line:
// "id parent major:minor root mountpoint opts [optional...] - fstype source superopts".
func daemonParseMountinfoLine(line string) (mountEntry, bool) {
	fields := strings.Fields(line)
	if len(fields) < 7 {
		return mountEntry{}, false
	}
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || sep+2 >= len(fields) {
		return mountEntry{}, false
	}
	return mountEntry{
		Mountpoint: daemonUnescapeMountinfo(fields[4]),
		FSType:     fields[sep+1],
		Source:     daemonUnescapeMountinfo(fields[sep+2]),
	}, true
}

// daemonUnescapeMountinfo undoes the octal escapes (\040 for a space) of
// the mount table.
func daemonUnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
