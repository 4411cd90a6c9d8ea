package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unionstack/unionstack/internal/testenv"
	"github.com/unionstack/unionstack/internal/testimage"
	"github.com/unionstack/unionstack/unionfs"
)

// TestCLIServe runs `unionctl serve` and mounts a fuse-driver container
// through it with the CLI: the rootfs works, no daemon is started for the
// mount (the only unionctl process is the server), `driver ls` names the
// server, the unmount ends the serving, and SIGTERM stops the server and
// removes its socket.
func TestCLIServe(t *testing.T) {
	bin := unionctlBin(t)
	layout, _, _ := testimage.BusyboxImage(t)
	root := tempRoot(t)
	needDriver(t, "fuse", filepath.Join(root, "probe"))
	socket := filepath.Join(root, "serve.sock")
	t.Setenv(unionfs.ServeSocketEnv, socket)

	server := exec.Command(bin, "serve", "--socket", socket)
	server.Env = cliEnv()
	server.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdout, err := server.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// The server writes its log into a file itself, so the test can read
	// it while the server runs.
	logPath := filepath.Join(root, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	serverLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	server.Stderr = logf
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = server.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = server.Process.Kill() // a no-op once it exited
		<-exited
		t.Logf("server log:\n%s", serverLog())
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, socket) {
		t.Fatalf("unionctl serve printed %q (%v), want the socket it serves", line, err)
	}

	c := &cli{t: t, bin: bin, driver: "fuse", root: filepath.Join(root, "store")}
	var drivers []driverStatus
	c.okJSON(&drivers, "driver", "ls", "--json")
	for _, d := range drivers {
		if d.Name == "fuse" && d.Features["mount_server"] != socket {
			t.Errorf("driver ls: fuse mount_server = %q, want %s", d.Features["mount_server"], socket)
		}
	}
	c.ok("image", "import", layout)
	c.ok("container", "create", "web", testimage.DefaultName)
	rootfs := filepath.Join(root, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	c.ok("container", "mount", "web", rootfs)
	t.Cleanup(func() {
		if left, _ := mountsBelow(rootfs); len(left) > 0 {
			c.run("container", "umount", rootfs)
		}
	})
	if _, err := os.Stat(filepath.Join(rootfs, "bin/busybox")); err != nil {
		t.Errorf("the served rootfs lacks bin/busybox: %v", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/served"), []byte("yes\n"), 0o644); err != nil {
		t.Errorf("write into the served rootfs: %v", err)
	}
	if procs := daemonsOf([]string{bin}); len(procs) != 1 || !strings.Contains(procs[0], "serve") {
		t.Errorf("unionctl processes while the container is mounted: %v; want only the server", procs)
	}
	c.ok("container", "umount", rootfs)
	if left, _ := mountsBelow(rootfs); len(left) > 0 {
		t.Errorf("container umount left %v mounted", left)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(serverLog(), "unmounted "+rootfs) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(serverLog(), "serving "+rootfs) || !strings.Contains(serverLog(), "unmounted "+rootfs) {
		t.Errorf("the server's log does not show it served and released %s", rootfs)
	}
	// A client in a mount namespace of its own (as a container runner
	// is): the mount lives there only, the server serves it, and it ends
	// with the namespace.
	nsRootfs := filepath.Join(root, "rootfs-ns")
	if err := os.Mkdir(nsRootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	unshare := testenv.NeedCommand(t, "unshare")
	script := fmt.Sprintf(`%s --driver fuse --root %s container mount web %s && test -x %s/bin/busybox && grep -q 'fuse.unionctl' /proc/self/mounts`,
		bin, c.root, nsRootfs, nsRootfs)
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = cliEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount through the server in a new mount namespace: %v\n%s", err, out)
	}
	if left, _ := mountsBelow(nsRootfs); len(left) > 0 {
		t.Errorf("the namespace's mount shows in the test's namespace: %v", left)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(serverLog(), "unmounted "+nsRootfs) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(serverLog(), "serving "+nsRootfs) || !strings.Contains(serverLog(), "unmounted "+nsRootfs) {
		t.Errorf("the server did not serve and release the namespace's mount of %s", nsRootfs)
	}

	if err := server.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("unionctl serve after SIGTERM: %v", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("unionctl serve did not exit on SIGTERM")
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Errorf("socket left after the server exited: %v", err)
	}
}
