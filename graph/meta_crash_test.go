package graph

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// The crash tests run the test binary again as a child that opens the store
// and dies (os.Exit, no Close, no deferred calls) in the middle of an
// operation, at the point a backend call is reached. The parent then
// reopens the store and checks what recovery made of it.
const (
	crashStageEnv = "UNIONSTACK_GRAPH_CRASH_STAGE"
	crashRootEnv  = "UNIONSTACK_GRAPH_CRASH_ROOT"
	crashedCode   = 3 // the child died where it should
	visibleCode   = 4 // the child saw a half-made snapshot
)

// TestMetaCrashChild is the child's side; it does nothing in a normal run.
func TestMetaCrashChild(t *testing.T) {
	stage, root := os.Getenv(crashStageEnv), os.Getenv(crashRootEnv)
	if stage == "" {
		return
	}
	b := newDirBackend(t, filepath.Join(root, "data"))
	drv, err := NewDriver(root, b)
	if err != nil {
		t.Fatal(err)
	}
	crashOn := map[string]string{"create": "create-done", "create-early": "create", "remove": "remove-half", "commit": "commit"}[stage]
	b.hook = func(op, id string) error {
		if op != crashOn {
			return nil
		}
		if op == "create" || op == "create-done" {
			// A snapshot being created is invisible.
			if _, err := drv.Stat(bg, "half"); !errors.Is(err, ErrNotFound) {
				os.Exit(visibleCode)
			}
		}
		os.Exit(crashedCode)
		return nil
	}
	switch stage {
	case "create":
		_, err = drv.Prepare(bg, "half", "base")
	case "create-early":
		_, err = drv.View(bg, "half", "base")
	case "remove":
		err = drv.Remove(bg, "victim")
	case "commit":
		err = drv.Commit(bg, "done", "pending")
	}
	t.Fatalf("stage %s did not crash (err %v)", stage, err)
}

func TestDriverCrashRecovery(t *testing.T) {
	cases := []struct {
		stage     string
		state     state  // the state the interrupted record is left in
		key       string // its key
		gone      bool   // recovery removes it
		activeKey string // recovery leaves this key active
	}{
		{"create", stateCreating, "half", true, ""},
		{"create-early", stateCreating, "half", true, ""},
		{"remove", stateRemoving, "victim", true, ""},
		{"commit", stateCommitting, "pending", false, "pending"},
	}
	for _, c := range cases {
		t.Run(c.stage, func(t *testing.T) {
			root := t.TempDir()
			ids := setupCrashStore(t, root)

			cmd := exec.Command(os.Args[0], "-test.run=^TestMetaCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashStageEnv+"="+c.stage, crashRootEnv+"="+root)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != crashedCode {
				t.Fatalf("child: %v (want exit code %d; %d means a half-made snapshot was visible)\n%s", err, crashedCode, visibleCode, out)
			}

			// What the crash left: the record in its intermediate state.
			recs := readRecords(t, root)
			if r := recs[c.key]; r == nil || r.State != c.state {
				t.Fatalf("record of %q after the crash: %+v, want state %s", c.key, r, c.state)
			}
			if c.stage == "commit" {
				if r := recs["done"]; r == nil || r.State != stateReserved {
					t.Errorf("name of the interrupted commit: %+v, want it reserved", r)
				}
			}

			// Data no record refers to (as a crash between steps of a
			// backend could leave) goes at open, too.
			if err := os.MkdirAll(filepath.Join(root, "data", "9999", "fs"), 0o755); err != nil {
				t.Fatal(err)
			}
			d := newMetaDriver(t, root)
			if !slices.Contains(d.b.cleanedUp, "9999") {
				t.Errorf("orphan data 9999 not cleaned up (cleaned: %v)", d.b.cleanedUp)
			}
			if c.gone {
				wantErrIs(t, "stat of "+c.key+" after recovery", errOnly(d.Stat(bg, c.key)), ErrNotFound)
			}
			if c.activeKey != "" {
				info, err := d.Stat(bg, c.activeKey)
				if err != nil || info.Kind != KindActive {
					t.Errorf("after an interrupted commit %q is %+v, %v; want active", c.activeKey, info, err)
				}
				wantErrIs(t, "stat of an interrupted commit's name", errOnly(d.Stat(bg, "done")), ErrNotFound)
				if err := d.Commit(bg, "done", c.activeKey); err != nil {
					t.Errorf("commit after recovery: %v", err)
				}
				if _, err := os.Stat(filepath.Join(d.b.dir(ids["pending"]), "fs", "work")); err != nil {
					t.Errorf("data of the interrupted commit lost: %v", err)
				}
			}
			// The backend holds exactly the data of the surviving records.
			var live []string
			for k, r := range readRecordsOf(t, d) {
				if c.gone && k == c.key {
					t.Errorf("record %q survived recovery: %+v", k, r)
				}
				live = append(live, r.idString())
			}
			slices.Sort(live)
			if got := d.b.dataIDs(t); !slices.Equal(got, live) {
				t.Errorf("backend data %v, live ids %v", got, live)
			}
			// The key can be used again.
			if c.stage == "create" || c.stage == "create-early" {
				mustMetaPrepare(t, d, "half", "base")
			}
		})
	}
}

// setupCrashStore makes base (committed), victim and pending (active, with
// a file); it returns the ids by key.
func setupCrashStore(t *testing.T, root string) map[string]string {
	t.Helper()
	d := newMetaDriver(t, root)
	mustMetaPrepare(t, d, "tmp", "")
	if err := d.Commit(bg, "base", "tmp"); err != nil {
		t.Fatal(err)
	}
	mustMetaPrepare(t, d, "victim", "base")
	mustMetaPrepare(t, d, "pending", "")
	ids := map[string]string{"base": d.b.creates[0].ID, "victim": d.b.creates[1].ID, "pending": d.b.creates[2].ID}
	if err := os.WriteFile(filepath.Join(d.b.dir(ids["pending"]), "fs", "work"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// readRecords reads every record of a closed store.
func readRecords(t *testing.T, root string) map[string]*record {
	t.Helper()
	db, err := bolt.Open(filepath.Join(root, MetadataFile), 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return recordsIn(t, db)
}

// readRecordsOf reads every record of an open driver's store.
func readRecordsOf(t *testing.T, d *metaDriver) map[string]*record {
	t.Helper()
	return recordsIn(t, d.Driver.(*driver).db)
}

func recordsIn(t *testing.T, db *bolt.DB) map[string]*record {
	t.Helper()
	recs := map[string]*record{}
	err := db.View(func(tx *bolt.Tx) error {
		return forEachRecord(tx, func(k string, r *record) error { recs[k] = r; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
