package unionfs

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkips are the posixtest cases that cannot apply to a union mount,
// with the reason.
var posixSkips = map[string]string{
	// The case takes two descriptors of ONE process and expects their
	// classic fcntl locks to conflict, which is go-fuse loopback's
	// per-descriptor (OFD) emulation, not POSIX: POSIX record locks
	// belong to the process, so the second F_SETLK must succeed. The
	// union leaves locking to the kernel (correct POSIX and flock
	// semantics between processes, kept across copy-up);
	// TestLocksBetweenProcesses checks them.
	"FcntlFlockLocksFile": "asserts per-descriptor fcntl locks within one process (go-fuse loopback emulation), not POSIX",
}

// TestPOSIX runs go-fuse's external POSIX suite against a union of an rw
// branch over an (empty) ro branch: with passthrough, with every handle
// served by the daemon, and with udba=none (directories opened by the
// kernel without a request, listings cached).
func TestPOSIX(t *testing.T) {
	needFUSE(t)
	var names []string
	for n := range posixtest.All {
		names = append(names, n)
	}
	sort.Strings(names)
	udbaNonePT := udbaNone
	udbaNonePT.Passthrough = true
	udbaNotify := udbaNonePT
	udbaNotify.Notify = true
	modes := []struct {
		name string
		opts Options
	}{
		{"passthrough", Options{Passthrough: true}},
		{"passthrough-all", Options{Passthrough: true, PassthroughLower: true}},
		{"daemon", Options{}},
		{"udba-none", udbaNonePT},
		{"udba-notify", udbaNotify},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			for _, name := range names {
				fn := posixtest.All[name]
				t.Run(name, func(t *testing.T) {
					if why, ok := posixSkips[name]; ok {
						t.Skip(why)
					}
					tu := mountUnion(t, []Mode{RW, RO}, nil, mode.opts)
					fn(t, tu.mnt)
				})
			}
		})
	}
}
