package unionfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary act as a helper process: a union daemon
// to kill, or a second process taking a lock.
func TestMain(m *testing.M) {
	switch os.Getenv("UNIONFS_TEST_HELPER") {
	case "serve":
		os.Exit(helperServe())
	case "lock":
		os.Exit(helperLock(os.Getenv("UNIONFS_TEST_LOCK"), os.Getenv("UNIONFS_TEST_PATH")))
	case "mmap":
		os.Exit(helperMmapWrite(os.Getenv("UNIONFS_TEST_PATH")))
	case "mmapwatch":
		os.Exit(helperMmapWatch(os.Getenv("UNIONFS_TEST_PATH")))
	}
	os.Exit(m.Run())
}

// helperServe mounts rw:ro from the environment, says "ready" and serves.
func helperServe() int {
	parts := strings.Split(os.Getenv("UNIONFS_TEST_BRANCHES"), ":")
	srv, err := Mount([]Branch{{Path: parts[0], Mode: RW}, {Path: parts[1], Mode: RO}}, os.Getenv("UNIONFS_TEST_MNT"), Options{Passthrough: true})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready")
	srv.Wait()
	return 0
}

// helperLock tries a non-blocking lock of kind (flock or fcntl) on path:
// exit 0 when taken, 3 when another process holds it.
func helperLock(kind, path string) int {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 1
	}
	defer f.Close()
	if kind == "flock" {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	} else {
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		err = unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
	}
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EACCES) {
		return 3
	}
	if err != nil {
		return 1
	}
	return 0
}

// helperMmapWrite writes "mmapped" at offset 4096 of path through a
// shared writable mapping. It runs in its own process: a page fault on a
// FUSE mapping served by the same Go process can deadlock against the
// runtime's stop-the-world.
func helperMmapWrite(path string) int {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	copy(mem[4096:], "mmapped")
	if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
		fmt.Println(err)
		return 1
	}
	if err := unix.Munmap(mem); err != nil {
		fmt.Println(err)
		return 1
	}
	return 0
}

// helperMmapWatch maps path shared and read-only, prints "ready" and
// the mapping's first four bytes, then for each line read from stdin
// prints the five bytes at offset 4096 of the mapping.
func helperMmapWatch(path string) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 8192, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer unix.Munmap(mem)
	fmt.Printf("ready %s\n", mem[:4])
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Printf("%s\n", mem[4096:4101])
	}
	return 0
}

func runLockHelper(t *testing.T, kind, path string) int {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "UNIONFS_TEST_HELPER=lock", "UNIONFS_TEST_LOCK="+kind, "UNIONFS_TEST_PATH="+path)
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

func TestLocksBetweenProcesses(t *testing.T) {
	tu := mountUnion(t, []Mode{RW, RO}, map[string]string{"1:f": "x"}, Options{Passthrough: true})
	p := tu.m("f")
	for _, kind := range []string{"flock", "fcntl"} {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if kind == "flock" {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		} else {
			lk := unix.Flock_t{Type: unix.F_WRLCK}
			err = unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
		}
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if code := runLockHelper(t, kind, p); code != 3 {
			t.Errorf("%s held: other process got exit %d, want 3 (lock busy)", kind, code)
		}
		f.Close()
		if code := runLockHelper(t, kind, p); code != 0 {
			t.Errorf("%s released: other process got exit %d, want 0", kind, code)
		}
	}
}

// startDaemon runs a union daemon in a child process.
func startDaemon(t *testing.T, rw, ro, mnt string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "UNIONFS_TEST_HELPER=serve", "UNIONFS_TEST_BRANCHES="+rw+":"+ro, "UNIONFS_TEST_MNT="+mnt)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("daemon: %q", line)
	}
	return cmd
}

func lazyUnmount(mnt string) {
	if exec.Command("fusermount3", "-u", "-z", mnt).Run() != nil {
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
	}
}
