package unionfs

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// readAheadKB is the kernel read-ahead window set on the mount's bdi; the
// default 128 KiB makes sequential reads through the daemon needlessly
// small.
const readAheadKB = 4096

// tuneReadAhead raises the read-ahead of the FUSE mount at mountpoint.
// Failure is harmless (only slower), so it is ignored. The device number
// comes from statx with AT_STATX_DONT_SYNC, which the kernel answers
// without asking the daemon (a plain stat would wait for the
// connection's INIT and a GETATTR round trip).
func tuneReadAhead(mountpoint string) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, mountpoint, unix.AT_STATX_DONT_SYNC, 0, &stx); err != nil {
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", stx.Dev_major, stx.Dev_minor)
	_ = os.WriteFile(p, []byte(fmt.Sprint(readAheadKB)), 0)
}
