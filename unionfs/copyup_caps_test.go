package unionfs

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// fileCaps is a security.capability value (revision 2) that gives
// cap_net_raw (13) permitted and effective, as Debian gives ping.
func fileCaps() []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0x02000000|1) // revision 2, effective
	for _, w := range []uint32{1 << 13, 0, 0, 0} {           // permitted, inheritable; high words
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b
}

// TestCopyUpKeepsFileCapabilities: a copy-up keeps a file's capabilities
// (security.capability), which a chown after setting them would drop,
// and its set-user-ID bit, whatever makes the copy: chmod, rename, a
// hard link or utimes.
func TestCopyUpKeepsFileCapabilities(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:ping": "elf", "1:su": "elf", "1:mv": "elf", "1:ln": "elf"}, Options{Passthrough: true})
	caps := fileCaps()
	for _, f := range []string{"ping", "mv", "ln"} {
		if err := unix.Setxattr(tu.b(1, f), "security.capability", caps, 0); err != nil {
			t.Fatalf("set file capabilities on the lower file: %v", err)
		}
	}
	if err := unix.Chmod(tu.b(1, "su"), 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tu.m("ping"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.UtimesNano(tu.m("su"), []unix.Timespec{{Sec: 1}, {Sec: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tu.m("mv"), tu.m("moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(tu.m("ln"), tu.m("ln2")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for _, f := range []string{"ping", "moved", "ln", "ln2"} {
		n, err := unix.Getxattr(tu.b(0, f), "security.capability", buf)
		if err != nil || !bytes.Equal(buf[:n], caps) {
			t.Errorf("capabilities of the copied-up %s: % x, %v; want % x", f, buf[:max(n, 0)], err, caps)
		}
	}
	if st := statT(t, tu.b(0, "su")); st.Mode&07777 != 0o4755 {
		t.Errorf("set-user-ID file copied up by utimes has mode %04o, want 4755", st.Mode&07777)
	}
}
