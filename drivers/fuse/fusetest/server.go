package fusetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unionstack/unionstack/unionfs"
)

// serveMain is `unionctl serve --socket SOCKET` played by the test binary.
// Unlike the real server it ends with the test process that started it:
// a test binary killed on purpose (graphtest's crash case re-executes
// the test and kills it) runs no cleanup to stop it.
func serveMain(socket string) int {
	go exitWithParent(os.Getppid())
	if err := unionfs.RunMountServer(socket, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "unionctl serve:", err)
		return 1
	}
	return 0
}

// exitWithParent sends this process SIGTERM (which RunMountServer turns
// into a clean close) once its parent, ppid, is gone.
func exitWithParent(ppid int) {
	for os.Getppid() == ppid {
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
}

// StartMountServer starts a mount server process (the test binary as
// `unionctl serve`) on a socket of its own and points the fuse driver's
// mounts at it (UNIONCTL_SERVE_SOCKET) for the rest of tb. When tb ends,
// after the cleanups registered later (so after their unmounts), the
// server gets SIGTERM and its log goes to the test log. It needs a
// TestMain that calls Main or Run.
func StartMountServer(tb testing.TB) string {
	tb.Helper()
	if helperPath == "" {
		tb.Fatal("fusetest.StartMountServer needs TestMain to call fusetest.Main or fusetest.Run")
	}
	dir, err := os.MkdirTemp("", "mount-server")
	if err != nil {
		tb.Fatal(err)
	}
	socket := filepath.Join(dir, "serve.sock")
	// The log goes to a file, which the server writes directly: read
	// while it runs, a buffer fed by exec's copying goroutine would race.
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		tb.Fatal(err)
	}
	defer logf.Close()
	readLog := func() string { b, _ := os.ReadFile(logPath); return strings.TrimSpace(string(b)) }
	cmd := exec.Command(helperPath, "serve", "--socket", socket)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("mount server: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			tb.Errorf("mount server did not exit on SIGTERM; killed it")
		}
		if s := readLog(); s != "" {
			tb.Logf("mount server log:\n%s", s)
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(10 * time.Second)
	for !unionfs.MountServerAlive(socket) {
		if time.Now().After(deadline) {
			tb.Fatalf("mount server on %s not up after 10s: %s", socket, readLog())
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Setenv(unionfs.ServeSocketEnv, socket)
	return socket
}
