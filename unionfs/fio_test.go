package unionfs

import (
	"crypto/rand"
	"os"
	"os/exec"
	"testing"

	"github.com/unionstack/unionstack/internal/testenv"
)

// TestFioVerify runs fio's data verification through the union, on a
// file of the read-only branch (so the first write copies it up), once
// per I/O path the kernel offers: pread/pwrite, O_DIRECT with libaio,
// io_uring, and a shared mmap. Each job writes random blocks carrying
// checksummed headers, then reads every block back and checks it
// (verify_backlog also checks blocks while it writes); fio fails on the
// first mismatch. It runs with passthrough (the kernel writes the rw
// file itself) and without (the daemon does), and the read-only branch
// must end unchanged.
func TestFioVerify(t *testing.T) {
	fio := testenv.NeedCommand(t, "fio")
	jobs := []struct {
		name string
		args []string
	}{
		{"psync", []string{"--ioengine=psync", "--rw=randwrite"}},
		{"libaio-direct", []string{"--ioengine=libaio", "--direct=1", "--iodepth=16", "--rw=randwrite"}},
		{"io_uring", []string{"--ioengine=io_uring", "--iodepth=16", "--rw=randwrite", "--verify_backlog=64"}},
		{"mmap", []string{"--ioengine=mmap", "--rw=randwrite"}},
	}
	for _, set := range []struct {
		name string
		opts Options
	}{
		{"passthrough", Options{Passthrough: true}},
		{"no-passthrough", Options{}},
	} {
		t.Run(set.name, func(t *testing.T) {
			tu := mountUnion(t, []Mode{RW, RO}, nil, set.opts)
			lower := make([]byte, 8<<20)
			if _, err := rand.Read(lower); err != nil {
				t.Fatal(err)
			}
			for _, job := range jobs {
				t.Run(job.name, func(t *testing.T) {
					name := "f-" + job.name
					if err := os.WriteFile(tu.b(1, name), lower, 0o644); err != nil {
						t.Fatal(err)
					}
					args := append([]string{
						"--name=" + job.name, "--filename=" + tu.m(name), "--size=8M", "--bs=4k",
						"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--randrepeat=0",
						"--output-format=terse",
					}, job.args...)
					cmd := exec.Command(fio, args...)
					cmd.Dir = t.TempDir() // where fio leaves its verify state
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Fatalf("fio %v: %v\n%s", args, err, out)
					}
					if got, err := os.ReadFile(tu.b(1, name)); err != nil || string(got) != string(lower) {
						t.Errorf("the read-only branch's %s changed (%v)", name, err)
					}
				})
			}
		})
	}
}
