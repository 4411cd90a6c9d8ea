package graph

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountinfo(t *testing.T) {
	in := []byte(`27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
36 27 98:0 /mnt1 /mnt/a\040b rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue
37 36 0:40 / /mnt/a\040b/c\134d rw - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0
`)
	got, err := parseMountinfo(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []mountInfo{
		{ID: 27, Parent: 1, MountPoint: "/", FSType: "ext4", Source: "/dev/vda"},
		{ID: 36, Parent: 27, MountPoint: "/mnt/a b", FSType: "ext3", Source: "/dev/root"},
		{ID: 37, Parent: 36, MountPoint: `/mnt/a b/c\d`, FSType: "fuse.fuse-overlayfs", Source: "fuse-overlayfs"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseMountinfo = %+v\nwant %+v", got, want)
	}
	if _, err := parseMountinfo([]byte("1 2 3\n")); err == nil {
		t.Errorf("a malformed line parsed")
	}
}

func TestSelectUnderOrder(t *testing.T) {
	all := []mountInfo{
		{ID: 1, MountPoint: "/"},
		{ID: 2, MountPoint: "/m"},
		{ID: 3, MountPoint: "/m/a"},
		{ID: 4, MountPoint: "/m/a/b/c"},
		{ID: 5, MountPoint: "/m"}, // stacked on /m, on top of 2
		{ID: 6, MountPoint: "/mm"},
		{ID: 7, MountPoint: "/m/z"},
	}
	var ids []int
	for _, mi := range selectUnder(all, "/m") {
		ids = append(ids, mi.ID)
	}
	if want := []int{4, 7, 3, 5, 2}; !slices.Equal(ids, want) {
		t.Errorf("unmount order %v, want %v", ids, want)
	}
}

func TestParseMountOptions(t *testing.T) {
	o, err := parseMountOptions([]string{"ro", "nosuid", "rw", "noexec", "lowerdir=/a", "rprivate", "x-systemd.foo", "nofail", "index=off"})
	if err != nil {
		t.Fatal(err)
	}
	if o.flags != unix.MS_NOSUID|unix.MS_NOEXEC {
		t.Errorf("flags %#x, want nosuid|noexec (rw clears ro)", o.flags)
	}
	if o.propagation != unix.MS_PRIVATE|unix.MS_REC {
		t.Errorf("propagation %#x", o.propagation)
	}
	if want := []string{"lowerdir=/a", "index=off"}; !slices.Equal(o.data, want) {
		t.Errorf("data %q, want %q", o.data, want)
	}
	if want := []string{"ro", "nosuid", "rw", "noexec", "lowerdir=/a", "rprivate", "index=off"}; !slices.Equal(o.helper, want) {
		t.Errorf("helper options %q, want %q", o.helper, want)
	}
	if _, err := parseMountOptions([]string{"ro", ""}); err == nil {
		t.Errorf("an empty option parsed")
	}
}

func TestOverlayParams(t *testing.T) {
	ps, err := overlayParams([]string{`lowerdir=/a:/b\:c:/d\\e::/data1::/data2`, "upperdir=/u", "lowerdir+=/x", "userxattr"})
	if err != nil {
		t.Fatal(err)
	}
	want := []overlayParam{
		{key: "lowerdir+", value: "/a"},
		{key: "lowerdir+", value: "/b:c"},
		{key: "lowerdir+", value: `/d\e`},
		{key: "datadir+", value: "/data1"},
		{key: "datadir+", value: "/data2"},
		{key: "upperdir", value: "/u"},
		{key: "lowerdir+", value: "/x"},
		{key: "userxattr", flag: true},
	}
	if !slices.Equal(ps, want) {
		t.Errorf("overlayParams = %+v\nwant %+v", ps, want)
	}
	if _, err := overlayParams([]string{"lowerdir=/a::"}); err == nil {
		t.Errorf("an empty data layer was accepted")
	}
}
