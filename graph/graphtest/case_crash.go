package graphtest

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/unionstack/unionstack/graph"
)

// crashChildEnv, when set to a store's root, makes the crash_recovery case
// play the child: it opens the store and changes it until it is killed.
const crashChildEnv = "UNIONSTACK_GRAPHTEST_CRASH_ROOT"

// crashLinePrefix marks the child's progress lines on its stdout.
const crashLinePrefix = "graphtest-crash: "

// crashTree is the base layer of the crash case: enough files that
// preparing a full copy of it takes a while.
func crashTree() []Entry {
	entries := []Entry{File("big", strings.Repeat("0123456789abcdef", 1<<16), 0o644)}
	for i := 0; i < 150; i++ {
		entries = append(entries, File(fmt.Sprintf("d%d/f%d", i%10, i), fmt.Sprint(i), 0o644))
	}
	return entries
}

// crashOp is one change the child makes: "prepare KEY PARENT", "view KEY
// PARENT", "commit NAME KEY" or "remove KEY".
type crashOp struct{ verb, a, b string }

// String is how the child announces the op.
func (o crashOp) String() string { return strings.TrimSpace(o.verb + " " + o.a + " " + o.b) }

// crashOps is the op sequence of the child, endless.
func crashOps(i int) []crashOp {
	ops := []crashOp{{"prepare", fmt.Sprintf("p-%d", i), "base"}}
	if i%2 == 1 {
		ops = append(ops, crashOp{"commit", fmt.Sprintf("c-%d", i), fmt.Sprintf("p-%d", i)})
	}
	if i%4 == 3 {
		ops = append(ops, crashOp{"remove", fmt.Sprintf("c-%d", i-2), ""})
	}
	if i%5 == 4 {
		ops = append(ops, crashOp{"view", fmt.Sprintf("v-%d", i), "base"})
	}
	return ops
}

// model is the kind of each snapshot the store should hold.
type model map[string]graph.Kind

// apply returns the model after op.
func (m model) apply(op crashOp) model {
	n := make(model, len(m)+1)
	for k, v := range m {
		n[k] = v
	}
	switch op.verb {
	case "prepare":
		n[op.a] = graph.KindActive
	case "view":
		n[op.a] = graph.KindView
	case "commit":
		delete(n, op.b)
		n[op.a] = graph.KindCommitted
	case "remove":
		delete(n, op.a)
	}
	return n
}

// testCrashRecovery: a process changing the store is killed with SIGKILL
// at a random moment (most likely inside a Prepare, which copies or sets
// up data); reopened, the store holds exactly the snapshots of the
// operations that finished, plus or minus the one that was cut short,
// which is either complete or gone. Everything stays usable and removable.
func testCrashRecovery(t *testing.T, s *suite) {
	if root := os.Getenv(crashChildEnv); root != "" {
		crashChild(t, s, root)
		return
	}
	root := t.TempDir()
	d, err := s.factory(t, root)
	must(t, err, "open driver at %s", root)
	CommitLayer(t, d, "base", "", crashTree()...)
	must(t, d.Close(), "close before the crash")

	done, pending := runCrashChild(t, root)
	before := model{"base": graph.KindCommitted}
	for _, op := range done {
		before = before.apply(op)
	}
	states := []model{before}
	if pending != nil {
		states = append(states, before.apply(*pending))
	}

	d = OpenAt(t, s.factory, root)
	ctx := context.Background()
	got := model{}
	for key, info := range keysOf(t, d) {
		got[key] = info.Kind
	}
	switch {
	case reflect.DeepEqual(got, states[0]):
		t.Logf("killed after %d ops, during %v; recovered to the state before it", len(done), pending)
	case len(states) > 1 && reflect.DeepEqual(got, states[1]):
		t.Logf("killed after %d ops, during %v; recovered to the state after it", len(done), pending)
	default:
		t.Errorf("after the crash the store holds %v; want %v (or, with %v done, %v)", got, states[0], pending, states[len(states)-1])
	}
	checkCountData(t, s, root, len(got))

	// Every surviving snapshot is complete and usable.
	want := crashTree()
	sample := []Entry{want[0], want[1], want[len(want)-1]}
	for _, key := range sortedKinds(got) {
		switch got[key] {
		case graph.KindActive, graph.KindView:
			dir := MountKey(t, d, key)
			CheckTree(t, dir, sample...)
			CheckNames(t, dir, "big", "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9")
			Unmount(t, dir)
		case graph.KindCommitted:
			if _, err := d.Usage(ctx, key); err != nil {
				t.Errorf("usage of %s after the crash: %v", key, err)
			}
		}
	}
	// The key of an interrupted Prepare or View that did not survive can
	// be used again.
	if pending != nil && (pending.verb == "prepare" || pending.verb == "view") {
		if _, ok := got[pending.a]; !ok {
			dir := PrepareTree(t, d, pending.a, "base")
			CheckTree(t, dir, sample...)
			Unmount(t, dir)
			got[pending.a] = graph.KindActive
		}
	}
	// Everything can be removed, children first, and leaves no data.
	for _, key := range sortedKinds(got) {
		if key != "base" {
			must(t, d.Remove(ctx, key), "remove %s after the crash", key)
		}
	}
	must(t, d.Remove(ctx, "base"), "remove base after the crash")
	checkCountData(t, s, root, 0)
}

// checkCountData compares the driver's own count of snapshot data with n.
func checkCountData(t testing.TB, s *suite, root string, n int) {
	t.Helper()
	if s.features.CountData == nil {
		return
	}
	count, err := s.features.CountData(root)
	if err != nil {
		t.Errorf("count data: %v", err)
	} else if count != n {
		t.Errorf("driver holds data of %d snapshots, the store has %d", count, n)
	}
}

// sortedKinds lists the keys of m in order.
func sortedKinds(m model) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// runCrashChild re-executes the test binary as the crash child on root,
// kills it with SIGKILL at a random moment after some operations, and
// returns the operations it finished and the one it had begun, if any.
func runCrashChild(t *testing.T, root string) (done []crashOp, pending *crashOp) {
	t.Helper()
	var pattern []string
	for _, part := range strings.Split(t.Name(), "/") {
		pattern = append(pattern, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(pattern, "/"), "-test.count=1", "-test.timeout=5m")
	// The child dies by SIGKILL, so its own t.TempDir cleanups never run:
	// its temporary directories go under one of ours, removed with it.
	cmd.Env = append(os.Environ(), crashChildEnv+"="+root, "TMPDIR="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	must(t, err, "pipe")
	must(t, cmd.Start(), "start crash child")
	t.Cleanup(func() { cmd.Process.Kill() })

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The kill is armed after a random number of finished ops, and lands
	// a random time later: most often inside a Prepare or View.
	killAfter := 4 + rand.IntN(8)
	var kill <-chan time.Time
	deadline := time.After(3 * time.Minute)
	killed := false
	var output []string
	for lines != nil {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			output = append(output, line)
			text, ok := strings.CutPrefix(line, crashLinePrefix)
			if !ok {
				continue
			}
			verb, rest, _ := strings.Cut(text, " ")
			switch verb {
			case "begin":
				f := strings.Fields(rest)
				for len(f) < 3 {
					f = append(f, "")
				}
				pending = &crashOp{f[0], f[1], f[2]}
			case "end":
				if pending != nil {
					done = append(done, *pending)
					pending = nil
				}
				if len(done) == killAfter {
					kill = time.After(time.Duration(rand.IntN(100)) * time.Millisecond)
				}
			}
		case <-kill:
			cmd.Process.Kill()
			killed = true
			kill = nil
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("crash child made no progress in 3 minutes; output:\n%s\n%s", strings.Join(output, "\n"), stderr.String())
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("crash child ended by itself (%v) before it was killed; output:\n%s\n%s", err, strings.Join(output, "\n"), stderr.String())
	}
	return done, pending
}

// crashChild is the child's side: it changes the store at root in an
// endless loop, announcing each operation on stdout before and after.
func crashChild(t *testing.T, s *suite, root string) {
	d, err := s.factory(t, root)
	if err != nil {
		t.Fatalf("crash child: open driver at %s: %v", root, err)
	}
	ctx := context.Background()
	for i := 0; i < 100000; i++ {
		for _, op := range crashOps(i) {
			fmt.Fprintf(os.Stdout, "%sbegin %s\n", crashLinePrefix, op)
			var err error
			switch op.verb {
			case "prepare":
				_, err = d.Prepare(ctx, op.a, op.b)
			case "view":
				_, err = d.View(ctx, op.a, op.b)
			case "commit":
				err = d.Commit(ctx, op.a, op.b)
			case "remove":
				err = d.Remove(ctx, op.a)
			}
			if err != nil {
				t.Fatalf("crash child: %s: %v", op, err)
			}
			fmt.Fprintf(os.Stdout, "%send\n", crashLinePrefix)
		}
	}
}
