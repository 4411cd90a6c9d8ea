package unionfs

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStatAhead: a statAhead stats a listing's files of its branch from
// the name asked for on, and take hands out exactly what an lstat at
// that moment gives; names before it, of other branches, or missing are
// left to the caller, as is a name asked for before it was stated.
func TestStatAhead(t *testing.T) {
	dir := t.TempDir()
	br := newBranch(dir, RO, 0)
	other := newBranch(t.TempDir(), RO, 0)
	lt := &listedTops{tops: map[string]dirent{}}
	var names []string
	for i := range 40 {
		name := fmt.Sprintf("f%02d", i)
		writeFile(t, filepath.Join(dir, name), string(make([]byte, i)))
		if err := os.Chmod(filepath.Join(dir, name), os.FileMode(0o600+i%8)); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		d := dirent{name: name, typ: syscall.DT_REG, br: br}
		if i == 30 {
			d.br = other
		}
		lt.tops[name] = d
	}
	names = append(names, "gone") // listed, then removed
	lt.tops["gone"] = dirent{name: "gone", typ: syscall.DT_REG, br: br}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	if sa := startStatAhead(lt, names, "f30", fd, newBranch(dir, RW, 0)); sa != nil {
		t.Error("a statAhead started for the rw branch")
	}
	if sa := startStatAhead(lt, names, "f35", fd, br); sa != nil {
		t.Errorf("a statAhead started for %d names, fewer than %d", len(sa.names), statAheadMin)
	}
	// statAheads of earlier tests' walks may still hold the slots.
	for deadline := time.Now().Add(10 * time.Second); len(statAheadSlots) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	sa := startStatAhead(lt, names, "f10", fd, br)
	if sa == nil {
		t.Fatal("no statAhead for 29 names")
	}
	var st syscall.Stat_t
	// Asked for before it was stated (or just then): the caller's.
	early := sa.take("f39", &st)
	deadline := time.Now().Add(10 * time.Second)
	for i := range sa.state {
		for sa.state[i].Load() == aheadPending && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	for _, name := range names {
		got := sa.take(name, &st)
		var want syscall.Stat_t
		lerr := syscall.Lstat(filepath.Join(dir, name), &want)
		ahead := len(name) == 3 && name >= "f10" && name != "f30" // stated ahead
		switch {
		case !ahead:
			if got {
				t.Errorf("take(%s) = true; want it left to the caller", name)
			}
		case name == "f39" && !early:
			if got {
				t.Errorf("take(f39) after giving it up = true")
			}
		case !got || lerr != nil || !reflect.DeepEqual(st, want):
			t.Errorf("take(%s) = %v: %+v; want the lstat %+v (%v)", name, got, st, want, lerr)
		}
	}
}

// TestStatAheadWalk: a walk of a large lower directory through the union
// (READDIRPLUS, its names stated ahead) reports every file's size and
// mode as the branch holds them.
func TestStatAheadWalk(t *testing.T) {
	files := map[string]string{}
	for i := range 300 {
		files[fmt.Sprintf("1:d/f%03d", i)] = string(make([]byte, i))
	}
	tu := mountUnion(t, []Mode{RW, RO}, files, Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour, NegativeTimeout: time.Hour})
	ents, err := os.ReadDir(tu.m("d"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 300 {
		t.Fatalf("%d names listed, want 300", len(ents))
	}
	for _, e := range ents {
		var got, want syscall.Stat_t
		if err := syscall.Lstat(tu.m("d/"+e.Name()), &got); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Lstat(tu.b(1, "d/"+e.Name()), &want); err != nil {
			t.Fatal(err)
		}
		if got.Size != want.Size || got.Mode != want.Mode || got.Mtim != want.Mtim {
			t.Errorf("%s: size %d mode %o mtime %v; the branch has %d %o %v", e.Name(), got.Size, got.Mode, got.Mtim, want.Size, want.Mode, want.Mtim)
		}
	}
}
