package unionfs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseDirs(t *testing.T) {
	base := "/base"
	tests := []struct {
		in   string
		want []Branch
		err  string
	}{
		{"./home:./company", []Branch{{"/base/home", RW}, {"/base/company", RO}}, ""},
		{"/a=rw:/b=ro:/c=rr", []Branch{{"/a", RW}, {"/b", RO}, {"/c", RR}}, ""},
		{"/a=ro:/b", []Branch{{"/a", RO}, {"/b", RO}}, ""},
		{"/a:/b=rr", []Branch{{"/a", RW}, {"/b", RR}}, ""},
		{"/a=rw:/b=ro+wh:/c=rr+wh", []Branch{{"/a", RW}, {"/b", RO}, {"/c", RO}}, ""}, // aufs's attribute
		{"/a=rw+wh", nil, `branch /a: unknown mode "rw+wh"`},
		{"a/../b/", []Branch{{"/base/b", RW}}, ""},
		{"/x=y=ro", []Branch{{"/x=y", RO}}, ""},
		{"", nil, "no branches"},
		{"/a::/b", nil, "empty branch at position 2"},
		{"/a:", nil, "empty branch at position 2"},
		{"/a=xx", nil, `branch /a: unknown mode "xx"`},
		{"=ro", nil, "has no path"},
	}
	for _, tc := range tests {
		got, err := ParseDirs(tc.in, base)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrBadSpec) {
				t.Errorf("ParseDirs(%q) = %v, %v; want ErrBadSpec containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseDirs(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	spec, err := ParseOptionsAt("rw,dirs=./home:./company,udba=none,attr_timeout=0.5,passthrough=off,fsname=u1,allow_other,debug,dev,suid,exec,auto,noauto,user,_netdev,nofail,defaults,x-systemd.automount,comment=x", "/w")
	if err != nil {
		t.Fatal(err)
	}
	want := MountSpec{
		Branches: []Branch{{"/w/home", RW}, {"/w/company", RO}},
		Options: Options{
			EntryTimeout: udbaNoneTimeout, AttrTimeout: 500 * time.Millisecond, NegativeTimeout: udbaNoneTimeout,
			Passthrough: false, FSName: "u1", AllowOther: true, Debug: true,
		},
	}
	if !reflect.DeepEqual(spec, want) {
		t.Errorf("ParseOptionsAt = %+v\nwant %+v", spec, want)
	}

	// passthrough=all passes lower files through too; a later option wins.
	for in, want := range map[string][2]bool{
		"dirs=/a:/b,passthrough=all":                {true, true},
		"dirs=/a:/b,passthrough=all,passthrough=on": {true, false},
		"dirs=/a:/b,passthrough=all,passthrough=no": {false, false},
		"dirs=/a:/b": {true, false},
	} {
		spec, err := ParseOptionsAt(in, "/")
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := [2]bool{spec.Options.Passthrough, spec.Options.PassthroughLower}; got != want {
			t.Errorf("%s: passthrough, lower = %v, want %v", in, got, want)
		}
	}

	// Explicit timeouts win over udba whatever the order; 0 means no cache.
	spec, err = ParseOptionsAt("entry_timeout=2s,udba=reval,negative_timeout=0,br:/a:/b=rr", "/")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Options.EntryTimeout != 2*time.Second || spec.Options.AttrTimeout != udbaRevalTimeout || spec.Options.NegativeTimeout != specNoCache {
		t.Errorf("timeouts = %v %v %v", spec.Options.EntryTimeout, spec.Options.AttrTimeout, spec.Options.NegativeTimeout)
	}
	if !reflect.DeepEqual(spec.Branches, []Branch{{"/a", RW}, {"/b", RR}}) {
		t.Errorf("br: branches = %v", spec.Branches)
	}
	spec, err = ParseOptionsAt("br=/a,udba=notify,ro,noexec,noatime,nodiratime", "/")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Options.EntryTimeout != udbaNoneTimeout || !spec.Options.Notify || !spec.ReadOnly || !spec.NoExec || !spec.NoAtime || !spec.NoDirAtime || !spec.Options.Passthrough {
		t.Errorf("spec = %+v", spec)
	}

	// nosuid and nodev are kept (root mounts are suid,dev otherwise); a
	// later suid or dev undoes them.
	for in, want := range map[string][2]bool{
		"dirs=/a,nosuid,nodev":          {true, true},
		"dirs=/a,nosuid,suid,nodev":     {false, true},
		"dirs=/a,dev,suid":              {false, false},
		"dirs=/a,nodev,dev,nosuid,exec": {true, false},
	} {
		spec, err := ParseOptionsAt(in, "/")
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := [2]bool{spec.NoSuid, spec.NoDev}; got != want {
			t.Errorf("%s: nosuid, nodev = %v, want %v", in, got, want)
		}
	}

	for opts, msg := range map[string]string{
		"dirs=/a,bogus":            `unknown mount option "bogus"`,
		"dirs=/a,dirs=/b":          "branches given twice",
		"dirs=/a,br=/b":            "branches given twice",
		"udba=sometimes":           "udba=sometimes",
		"entry_timeout=soon":       "entry_timeout=soon",
		"attr_timeout=-1":          "negative timeout",
		"passthrough=maybe":        "passthrough=maybe",
		"fsname=":                  "fsname",
		"dirs=/a=wr":               `unknown mode "wr"`,
		"dirs=":                    "no branches",
		"dirs=/a,allow_other=1":    `unknown mount option "allow_other=1"`,
		"dirs=/a,rw=1":             `unknown mount option "rw=1"`,
		"dirs=/a,default_perms,ro": `unknown mount option "default_perms"`,
	} {
		_, err := ParseOptionsAt(opts, "/")
		if err == nil || !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseOptionsAt(%q) = %v; want ErrBadSpec naming %q", opts, err, msg)
		}
	}
}

// TestParseAufsOptions: aufs's options are met (accepted, no change to
// the spec), refused saying why, or rejected for a malformed value.
func TestParseAufsOptions(t *testing.T) {
	plain, err := ParseOptionsAt("dirs=/a:/b", "/")
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []string{
		"xino=/dev/shm/aufs.xino", "noxino", "trunc_xino", "notrunc_xino", "trunc_xino_path=/x", "itrunc_xino=0",
		"trunc_xib", "notrunc_xib", "plink", "noplink", "clean_plink", "dio", "nodio", "dirren", "nodirren",
		"dirperm1", "diropq=w", "diropq=whiteouted", "nosum", "wsum", "acl", "noshwh", "warn_perm", "nowarn_perm",
		"verbose", "v", "noverbose", "quiet", "q", "silent", "dirwh=3", "rdcache=10", "rdblk=def", "rdblk=512",
		"rdhash=def", "rdhash=32", "create=tdp", "create=top-down-parent", "create=rr", "create=mfs", "create=mfs:60",
		"create_policy=most-free-space:5", "create=tdmfs:1000", "create=tdmfs:1000:30", "create=mfsrr:1000",
		"create=pmfs", "create=pmfs:30", "create=pmfsrr:1000:30", "cpup=tdp", "copyup=bup", "copyup_policy=bottom-up",
	} {
		spec, err := ParseOptionsAt("dirs=/a:/b,"+opt, "/")
		if err != nil || !reflect.DeepEqual(spec, plain) {
			t.Errorf("%s: %+v, %v; want the spec without it", opt, spec, err)
		}
	}
	for in, want := range map[string]bool{"sum": true, "sum,nosum": false, "sum,wsum": false, "nosum,sum": true} {
		spec, err := ParseOptionsAt("dirs=/a:/b,"+in, "/")
		if err != nil || spec.Options.StatfsSum != want {
			t.Errorf("%s: StatfsSum %v, %v; want %v", in, spec.Options.StatfsSum, err, want)
		}
	}
	spec, err := ParseOptionsAt("dirs=/a:/b,udba=fsnotify", "/")
	if err != nil || !spec.Options.Notify || spec.Options.EntryTimeout != udbaNoneTimeout {
		t.Errorf("udba=fsnotify: %+v, %v; want udba=notify", spec.Options, err)
	}
	for opt, msg := range map[string]string{
		"shwh":              "aufs option shwh is not supported: whiteouts are never shown",
		"diropq=a":          "aufs option diropq=a is not supported",
		"diropq=always":     "only where a whiteout needs it",
		"nodirperm1":        "top-most copy only",
		"noacl":             "POSIX ACLs are always checked",
		"add:1:/c":          "use unionctl branch add|del",
		"ins=1:/c":          "use unionctl branch add|del",
		"append:/c=ro":      "use unionctl branch add|del",
		"prepend=/c":        "use unionctl branch add|del",
		"del:/b":            "use unionctl branch add|del",
		"mod:/b=rr":         "use unionctl branch add|del",
		"xino=":             "option xino: empty path",
		"rdcache=-1":        "rdcache=-1: want a non-negative integer",
		"dirwh=many":        "dirwh=many: want a non-negative integer",
		"rdblk=huge":        "rdblk=huge",
		"create=best":       `create=best: unknown policy "best"`,
		"create=tdp:1":      "policy tdp takes [0] numbers",
		"create=mfs:x":      `create=mfs:x: "x" is not a non-negative integer`,
		"rdhash=4294967296": "want a non-negative integer below 2^31",
		"cpup=rr":           `cpup=rr: unknown policy "rr"`,
		"create=":           `unknown policy ""`,
		"udba=inotify":      "udba=inotify",
	} {
		_, err := ParseOptionsAt("dirs=/a:/b,"+opt, "/")
		if err == nil || !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v; want ErrBadSpec containing %q", opt, err, msg)
		}
	}
}

func TestSpecFromArgs(t *testing.T) {
	spec, err := SpecFromArgs("dirs=a:b", []string{"udba=none"}, "/w")
	if err != nil || len(spec.Branches) != 2 || spec.Branches[0].Path != "/w/a" || spec.Options.EntryTimeout != udbaNoneTimeout {
		t.Errorf("SpecFromArgs = %+v, %v", spec, err)
	}
	spec, err = SpecFromArgs("none", []string{"dirs=/x"}, "/w")
	if err != nil || len(spec.Branches) != 1 || spec.Branches[0] != (Branch{"/x", RW}) {
		t.Errorf("SpecFromArgs(none) = %+v, %v", spec, err)
	}
	if _, err := SpecFromArgs("none", []string{"udba=none"}, "/w"); !errors.Is(err, ErrBadSpec) {
		t.Errorf("SpecFromArgs without dirs = %v; want ErrBadSpec", err)
	}
	if _, err := SpecFromArgs("dirs=/a", []string{"dirs=/b"}, "/w"); !errors.Is(err, ErrBadSpec) {
		t.Errorf("SpecFromArgs with dirs twice = %v; want ErrBadSpec", err)
	}
}

func TestIsHelperCall(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"unionctl", "none", "/mnt", "-o", "rw,dirs=/a:/b"}, true},
		{[]string{"unionctl", "-o", "dirs=/a", "none", "/mnt"}, true},
		{[]string{"unionctl", "-odirs=/a", "none", "/mnt"}, true},
		{[]string{"unionctl", "dirs=/a:/b", "/mnt"}, true},
		{[]string{"/usr/local/sbin/fuse3.unionctl", "none", "/mnt", "-o", "dirs=/a"}, true},
		{[]string{"/sbin/mount.fuse3.unionctl", "none", "/mnt", "-o", "dirs=/a", "-t", "fuse3.unionctl"}, true},
		{[]string{"unionctl", "mount", "-o", "dirs=/a", "/mnt"}, false},
		{[]string{"unionctl", "mount", "dirs=/a", "/mnt"}, false},
		{[]string{"unionctl", "umount", "/mnt"}, false},
		{[]string{"unionctl", "branch", "ls", "/mnt"}, false},
		{[]string{"unionctl", "none", "/mnt"}, false},
		{[]string{"unionctl", "none", "/mnt", "-o", "x", "--root", "/r"}, false},
		{[]string{"unionctl.test", "-test.v", "-test.run", "X"}, false},
		{[]string{"/tmp/go-build1/b001/fuse.test", "-test.paniconexit0"}, false},
		{[]string{"/tmp/go-build1/b001/mount.test", "-test.v"}, false},
		{[]string{"unionctl"}, false},
		{nil, false},
	} {
		if got := IsHelperCall(tc.args); got != tc.want {
			t.Errorf("IsHelperCall(%q) = %v; want %v", tc.args, got, tc.want)
		}
	}
}

// specTree makes dirs (and files, for names ending in "~") under a temp
// dir and returns it.
func specTree(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		p := filepath.Join(dir, strings.TrimSuffix(n, "~"))
		if strings.HasSuffix(n, "~") {
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestValidate(t *testing.T) {
	d := specTree(t, "home", "company", "home/sub", "mnt", "file~", "other")
	if err := os.Symlink(filepath.Join(d, "home"), filepath.Join(d, "homelink")); err != nil {
		t.Fatal(err)
	}
	p := func(n string) string { return filepath.Join(d, n) }
	mnt := p("mnt")
	ok := []struct {
		branches []Branch
		mnt      string
	}{
		{[]Branch{{p("home"), RW}, {p("company"), RO}}, mnt},
		{[]Branch{{p("home"), RO}, {p("company"), RR}}, mnt}, // all read-only: a read-only union
		{[]Branch{{p("homelink"), RW}}, mnt},
		{[]Branch{{p("company"), RW}}, p("home/sub")},
	}
	for _, tc := range ok {
		if err := Validate(tc.branches, tc.mnt); err != nil {
			t.Errorf("Validate(%v, %s) = %v; want nil", tc.branches, tc.mnt, err)
		}
	}
	bad := []struct {
		branches []Branch
		mnt      string
		msg      string
	}{
		{[]Branch{{p("nope"), RW}}, mnt, "nope: no such directory"},
		{[]Branch{{p("file"), RW}}, mnt, "file: not a directory"},
		{[]Branch{{p("home"), RW}, {p("homelink"), RO}}, mnt, "given twice"},
		{[]Branch{{p("home"), RW}, {p("home"), RO}}, mnt, "given twice"},
		{[]Branch{{p("home"), RW}, {p("home/sub"), RO}}, mnt, "inside branch"},
		{[]Branch{{p("home/sub"), RW}, {p("homelink"), RO}}, mnt, "inside branch"},
		{[]Branch{{p("home"), RW}}, p("home/sub"), "mountpoint " + p("home/sub") + " is inside branch"},
		{[]Branch{{d, RW}}, mnt, "is inside branch"},
		{[]Branch{{p("home/sub"), RW}}, p("home"), "is inside mountpoint"},
		{[]Branch{{p("home"), RW}}, p("home"), "is branch 1"},
		{[]Branch{{p("home"), Mode(7)}}, mnt, "unknown mode"},
		{[]Branch{{p("home"), RO}, {p("company"), RW}}, mnt, "only the top branch may be rw"},
		{[]Branch{{p("home"), RW}}, p("nomnt"), "mountpoint " + p("nomnt") + ": no such directory"},
		{[]Branch{{p("home"), RW}}, p("file"), "not a directory"},
		{[]Branch{{p("home"), RW}}, "", "no mountpoint"},
		{nil, mnt, "no branches"},
	}
	for _, tc := range bad {
		err := Validate(tc.branches, tc.mnt)
		if err == nil || !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Validate(%v, %s) = %v; want ErrBadSpec naming %q", tc.branches, tc.mnt, err, tc.msg)
		}
	}
}

func TestDaemonEscapePath(t *testing.T) {
	for in, want := range map[string]string{
		"/":             "-",
		"/mnt/union":    "mnt-union",
		"/tmp/a-b c/.x": `tmp-a\x2db\x20c-.x`,
		"/.hidden":      `\x2ehidden`,
	} {
		if got := daemonEscapePath(in); got != want {
			t.Errorf("daemonEscapePath(%q) = %q; want %q", in, got, want)
		}
	}
	long := "/" + strings.Repeat("d", 200)
	st := daemonStateFor(long)
	if n := len(st.socketPath()); n > maxSocketPath {
		t.Errorf("socket path of a long mountpoint is %d bytes", n)
	}
	if daemonStateFor(long+"x").dir == st.dir {
		t.Error("two long mountpoints share a state dir")
	}
}
