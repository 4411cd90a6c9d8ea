package graph

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

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
