package mountinfo

import (
	"slices"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	in := []byte(`27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
36 27 98:0 /mnt1 /mnt/a\040b rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue
37 36 0:40 / /mnt/a\040b/c\134d rw - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0
`)
	got, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{ID: 27, Parent: 1, MountPoint: "/", FSType: "ext4", Source: "/dev/vda"},
		{ID: 36, Parent: 27, MountPoint: "/mnt/a b", FSType: "ext3", Source: "/dev/root"},
		{ID: 37, Parent: 36, MountPoint: `/mnt/a b/c\d`, FSType: "fuse.fuse-overlayfs", Source: "fuse-overlayfs"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Parse = %+v\nwant %+v", got, want)
	}
	if _, err := Parse([]byte("1 2 3\n")); err == nil {
		t.Errorf("a malformed line parsed")
	}
}

func TestUnderOrder(t *testing.T) {
	all := []Entry{
		{ID: 1, MountPoint: "/"},
		{ID: 2, MountPoint: "/m"},
		{ID: 3, MountPoint: "/m/a"},
		{ID: 4, MountPoint: "/m/a/b/c"},
		{ID: 5, MountPoint: "/m"}, // stacked on /m, on top of 2
		{ID: 6, MountPoint: "/mm"},
		{ID: 7, MountPoint: "/m/z"},
	}
	var ids []int
	for _, mi := range Under(all, "/m") {
		ids = append(ids, mi.ID)
	}
	if want := []int{4, 7, 3, 5, 2}; !slices.Equal(ids, want) {
		t.Errorf("unmount order %v, want %v", ids, want)
	}
}
