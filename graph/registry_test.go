package graph

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
)

// registryTestDriver is the Driver the registry tests open: it does
// nothing but remember where it was opened.
type registryTestDriver struct {
	Driver
	root    string
	options map[string]string
}

var registryTestOnce sync.Once

func TestRegistry(t *testing.T) {
	good := Registration{
		New: func(root string, options map[string]string) (Driver, error) {
			return &registryTestDriver{root: root, options: options}, nil
		},
		Probe: func(root string) (map[string]string, error) { return map[string]string{"feature": "yes"}, nil },
		Doc:   "works everywhere",
	}
	bad := Registration{
		New: func(string, map[string]string) (Driver, error) {
			t.Error("New called although Probe failed")
			return nil, nil
		},
		Probe: func(root string) (map[string]string, error) {
			return nil, Errorf(ErrNotSupported, "probe", root, "needs a flux capacitor")
		},
		Doc: "never works",
	}
	failing := Registration{New: func(string, map[string]string) (Driver, error) {
		return nil, Errorf(ErrInvalidArgument, "new", "x", "bad option")
	}}
	// The registry is global and lives as long as the test binary: register
	// once even when the test runs again (-count).
	registryTestOnce.Do(func() {
		Register("registrytest-good", good)
		Register("registrytest-bad", bad)
		Register("registrytest-failing", failing)
	})

	names := Drivers()
	if !slices.IsSorted(names) || !slices.Contains(names, "registrytest-good") || !slices.Contains(names, "registrytest-bad") {
		t.Errorf("Drivers() = %v", names)
	}

	opts := map[string]string{"k": "v"}
	d, err := Open("registrytest-good", "/some/root", opts)
	if err != nil {
		t.Fatal(err)
	}
	if rd := d.(*registryTestDriver); rd.root != "/some/root" || !maps.Equal(rd.options, opts) {
		t.Errorf("opened with %q %v", rd.root, rd.options)
	}
	_, err = Open("registrytest-bad", "/r", nil)
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "flux capacitor") || !strings.Contains(err.Error(), "registrytest-bad") {
		t.Errorf("Open of an unusable driver: %v", err)
	}
	_, err = Open("registrytest-failing", "/r", nil)
	wantErrIs(t, "Open whose New fails", err, ErrInvalidArgument)
	_, err = Open("registrytest-none", "/r", nil)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "registrytest-good") {
		t.Errorf("Open of an unknown driver: %v (should list the known ones)", err)
	}

	byName := map[string]Availability{}
	for _, a := range Available("/r") {
		byName[a.Name] = a
	}
	if a := byName["registrytest-good"]; !a.Usable || a.Features["feature"] != "yes" || a.Doc != "works everywhere" {
		t.Errorf("Available good = %+v", a)
	}
	if a := byName["registrytest-bad"]; a.Usable || !strings.Contains(a.Reason, "flux capacitor") || !strings.Contains(a.String(), "unusable") {
		t.Errorf("Available bad = %+v", a)
	}
	if a := byName["registrytest-failing"]; !a.Usable {
		t.Errorf("a driver without Probe is usable: %+v", a)
	}

	for name, r := range map[string]Registration{"registrytest-good": good, "registrytest-nonew": {}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", name)
				}
			}()
			Register(name, r)
		}()
	}
}

func TestParseOptions(t *testing.T) {
	m, err := ParseOptions([]string{"a=1", "b", "c=x=y", "d="})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "1", "b": "true", "c": "x=y", "d": ""}; !maps.Equal(m, want) {
		t.Errorf("ParseOptions = %v, want %v", m, want)
	}
	for _, bad := range [][]string{{""}, {"=v"}} {
		if _, err := ParseOptions(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseOptions(%q): %v", bad, err)
		}
	}
}

func TestKindString(t *testing.T) {
	for _, k := range []Kind{KindView, KindActive, KindCommitted} {
		back, err := ParseKind(k.String())
		if err != nil || back != k {
			t.Errorf("ParseKind(%q) = %v, %v", k, back, err)
		}
	}
	if _, err := ParseKind("nope"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ParseKind(nope): %v", err)
	}
	if KindUnknown.String() != "Unknown" {
		t.Errorf("KindUnknown = %q", KindUnknown)
	}
}
