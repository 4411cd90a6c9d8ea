package unionfs

import (
	"fmt"
	"os"
	"syscall"
)

// readAheadKB is the kernel read-ahead window set on the mount's bdi; the
// default 128 KiB makes sequential reads through the daemon needlessly
// small.
const readAheadKB = 4096

// tuneReadAhead raises the read-ahead of the FUSE mount at mountpoint.
// Failure is harmless (only slower), so it is ignored.
func tuneReadAhead(mountpoint string) {
	var st syscall.Stat_t
	if err := syscall.Stat(mountpoint, &st); err != nil {
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", (st.Dev>>8)&0xfff, (st.Dev&0xff)|((st.Dev>>12)&0xfff00))
	_ = os.WriteFile(p, []byte(fmt.Sprint(readAheadKB)), 0)
}
