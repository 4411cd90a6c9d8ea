package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unionstack/unionstack/internal/testenv"
)

// benchUnionctl runs `unionctl ARGS` through a symlink named unionctl to
// this test binary (which then acts as the CLI) and returns its output
// and exit code.
func benchUnionctl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "unionctl")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("unionctl %q: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestBenchFSBadFlags checks that bad flags and arguments exit 2 with a
// message naming the problem, before anything is mounted or created.
func TestBenchFSBadFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "fs", "--scale", "0"}, "--scale"},
		{[]string{"bench", "fs", "--scale", "-1"}, "--scale"},
		{[]string{"bench", "fs", "--scale", "100"}, "--scale"},
		{[]string{"bench", "fs", "--scale", "x"}, "scale"},
		{[]string{"bench", "fs", "--only", "overlay,zfs"}, `"zfs"`},
		{[]string{"bench", "fs", "--repeat", "0"}, "--repeat"},
		{[]string{"bench", "fs", "--repeat", "11"}, "--repeat"},
		{[]string{"bench", "fs", "--unionfs-opts", "bogus=1"}, "bogus"},
		{[]string{"bench", "fs", "--unionfs-opts", "dirs=/a:/b"}, "--unionfs-opts"},
		{[]string{"bench", "fs", "--unionfs-opts", "udba=none,ro"}, "--unionfs-opts"},
		{[]string{"bench", "fs", "--dir", filepath.Join(dir, "missing")}, "--dir"},
		{[]string{"bench", "fs", "--dir", file}, "not a directory"},
		{[]string{"bench", "fs", "extra"}, "no arguments"},
		{[]string{"bench", "fs", "--bogus"}, "--bogus"},
		{[]string{"bench", "nosuch"}, `"nosuch"`},
	} {
		_, stderr, code := benchUnionctl(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("unionctl %s: exit %d, stderr %q; want exit %d naming %s", strings.Join(tc.args, " "), code, stderr, exitUsage, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("bad flags left files in --dir: %v", entries)
	}
}

// TestBenchFSSmoke runs `unionctl bench fs` at a tiny scale on every
// filesystem, ours through `unionctl mount` (the CLI's real path), and
// checks the JSON: every filesystem ran every workload, was verified, and
// nothing is left in the scratch dir.
func TestBenchFSSmoke(t *testing.T) {
	testenv.NeedRoot(t)
	_, err := os.Stat("/dev/fuse")
	testenv.Need(t, err == nil, "/dev/fuse missing (no FUSE)")
	testenv.NeedCommand(t, "fuse-overlayfs")
	testenv.NeedCommand(t, "unionfs-fuse")
	dir := t.TempDir()
	stdout, stderr, code := benchUnionctl(t, "bench", "fs", "--scale", "0.002", "--json", "--dir", dir)
	if code != 0 {
		t.Fatalf("bench fs: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var rep struct {
		Filesystems []struct {
			Name      string `json:"name"`
			Skipped   string `json:"skipped"`
			Error     string `json:"error"`
			Verified  bool   `json:"verified"`
			VerifyErr string `json:"verify_error"`
			RSS       int64  `json:"daemon_rss_after_warm_walk_bytes"`
			Results   map[string]struct {
				Seconds float64  `json:"seconds"`
				Ratio   *float64 `json:"ratio_to_overlay"`
				Error   string   `json:"error"`
			} `json:"results"`
		} `json:"filesystems"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("bench fs --json: %v\n%s", err, stdout)
	}
	var names []string
	for _, fs := range rep.Filesystems {
		names = append(names, fs.Name)
		if fs.Skipped != "" || fs.Error != "" || !fs.Verified {
			t.Errorf("%s: skipped %q, error %q, verified %v (%s)", fs.Name, fs.Skipped, fs.Error, fs.Verified, fs.VerifyErr)
		}
		// Every filesystem but kernel overlayfs is served by a daemon.
		if (fs.RSS > 0) != (fs.Name != "overlay") {
			t.Errorf("%s: daemon memory after the walk %d B", fs.Name, fs.RSS)
		}
		if len(fs.Results) != 7 {
			t.Errorf("%s: %d workload results, want 7", fs.Name, len(fs.Results))
		}
		for wl, r := range fs.Results {
			if r.Error != "" || r.Seconds <= 0 || r.Ratio == nil {
				t.Errorf("%s %s: seconds %v, ratio %v, error %q", fs.Name, wl, r.Seconds, r.Ratio, r.Error)
			}
		}
	}
	if got := strings.Join(names, ","); got != "overlay,fuse-overlayfs,unionfs-fuse,unionfs,unionfs-udba-none,unionfs-fast" {
		t.Errorf("filesystems %s", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("bench fs left %d entries in --dir", len(entries))
	}
}
