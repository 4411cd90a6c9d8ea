package unionfs

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestParseRemount: the options mount(8) hands to a remount become
// branch edits in order and flag changes; what the union was mounted
// with is taken and left alone, and what cannot change is refused.
func TestParseRemount(t *testing.T) {
	p, err := parseRemount([]string{"rw,relatime,remount,user_id=0,group_id=0,default_permissions,allow_other,max_read=524288," +
		"add:1:/x,ins=2:/y=rr,append:z,prepend:/w=ro+wh,del:/v,del=/u,mod:/t=rr,dirs=/a:/b,udba=none,xino=/dev/shm/x,nosuid,ro,x-systemd.automount"})
	if err != nil {
		t.Fatal(err)
	}
	want := []BranchEdit{
		{Op: EditAdd, Branch: Branch{Path: "/x", Mode: RO}, Index: 1},
		{Op: EditAdd, Branch: Branch{Path: "/y", Mode: RR}, Index: 2},
		{Op: EditAdd, Branch: Branch{Path: "z", Mode: RO}, Index: -1},
		{Op: EditAdd, Branch: Branch{Path: "/w", Mode: RO}, Index: 0},
		{Op: EditDel, Branch: Branch{Path: "/v"}},
		{Op: EditDel, Branch: Branch{Path: "/u"}},
		{Op: EditMod, Branch: Branch{Path: "/t", Mode: RR}},
	}
	if !reflect.DeepEqual(p.edits, want) {
		t.Errorf("edits %+v\nwant %+v", p.edits, want)
	}
	if p.on != unix.MS_RELATIME|unix.MS_NOSUID|unix.MS_RDONLY || p.off != 0 {
		t.Errorf("flags on %#x off %#x; want relatime, nosuid, ro on", p.on, p.off)
	}
	if p, err := parseRemount([]string{"ro,noexec,rw", "exec"}); err != nil || p.off != unix.MS_RDONLY|unix.MS_NOEXEC || p.on != 0 {
		t.Errorf("ro,noexec,rw + exec: on %#x off %#x, %v; want ro and noexec off", p.on, p.off, err)
	}
	for opts, msg := range map[string]string{
		"remount,mod:/a":      "want mod:DIR=MODE",
		"remount,mod:/a=xx":   `unknown branch mode "xx"`,
		"remount,imod:0:rr":   "branches are named by path",
		"remount,idel:0":      "branches are named by path",
		"remount,add:x:/a":    "want add:INDEX:DIR[=MODE]",
		"remount,add:1":       "want add:INDEX:DIR[=MODE]",
		"remount,ins:-1:/a":   "want ins:INDEX:DIR[=MODE]",
		"remount,add:1:/a=wr": `unknown branch mode "wr"`,
		"remount,append:=ro":  "empty path",
		"remount,del:":        "del: which branch?",
		"remount,del":         "remount option del: which branch?",
		"remount,udba=soon":   "udba=soon",
		"remount,bogus":       `unknown mount option "bogus"`,
		"remount,shwh":        "aufs option shwh is not supported",
	} {
		_, err := parseRemount([]string{opts})
		if err == nil || !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v; want ErrBadSpec containing %q", opts, err, msg)
		}
	}
	if !helperIsRemount([]string{"rw", "dev,remount"}) || helperIsRemount([]string{"dirs=/a,remounted"}) {
		t.Error("helperIsRemount")
	}
}
