package unionfs

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestAufsWalkthrough is the classic aufs example: home over company.
func TestAufsWalkthrough(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	home, company, mnt := filepath.Join(dir, "home"), filepath.Join(dir, "company"), filepath.Join(dir, "mnt")
	for _, d := range []string{home, company, mnt} {
		if err := os.Mkdir(d, 0755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"eat", "sleep"} {
		writeFile(t, filepath.Join(home, f), "")
	}
	for _, f := range []string{"code", "meeting"} {
		writeFile(t, filepath.Join(company, f), "")
	}
	srv, err := Mount([]Branch{{Path: home, Mode: RW}, {Path: company, Mode: RO}}, mnt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Unmount() })

	if got, want := listDir(t, mnt), []string{"code", "eat", "meeting", "sleep"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ls mnt = %v, want %v", got, want)
	}
	writeFile(t, filepath.Join(mnt, "code"), "apple\n")
	if got := readFile(t, filepath.Join(company, "code")); got != "" {
		t.Errorf("company/code = %q, want empty", got)
	}
	if got := readFile(t, filepath.Join(home, "code")); got != "apple\n" {
		t.Errorf("home/code = %q, want apple", got)
	}
	if got := readFile(t, filepath.Join(mnt, "code")); got != "apple\n" {
		t.Errorf("mnt/code = %q, want apple", got)
	}
}
