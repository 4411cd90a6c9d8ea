package graph

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// NewFunc opens a driver with its data under root. options are driver
// specific "key=value" strings (e.g. "overlay.redirect_dir=on").
type NewFunc func(root string, options map[string]string) (Driver, error)

// ProbeFunc says whether a driver can run on this host, with root as the
// place its data would live. It returns the features it found (name ->
// value, for `unionctl driver ls`) and, when the driver cannot run, an
// error wrapping ErrNotSupported that says exactly why.
type ProbeFunc func(root string) (features map[string]string, err error)

// Registration is what a driver registers under its name.
type Registration struct {
	New   NewFunc
	Probe ProbeFunc // may be nil: the driver runs everywhere
	Doc   string    // one line: what the driver is for
}

// Availability is the answer of Available for one driver.
type Availability struct {
	Name     string
	Doc      string
	Usable   bool
	Reason   string            // why not, when !Usable
	Features map[string]string // probed features
}

var (
	registryMu sync.Mutex
	registry   = map[string]Registration{}
)

// Register makes a driver known under name. Drivers call it from init();
// registering one name twice panics.
func Register(name string, r Registration) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if r.New == nil {
		panic("graph: Register " + name + " without New")
	}
	if _, dup := registry[name]; dup {
		panic("graph: Register called twice for driver " + name)
	}
	registry[name] = r
}

// Drivers lists the registered driver names, sorted.
func Drivers() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open opens the registered driver name with its data under root.
func Open(name, root string, options map[string]string) (Driver, error) {
	registryMu.Lock()
	r, ok := registry[name]
	registryMu.Unlock()
	if !ok {
		return nil, Errorf(ErrNotFound, "open driver", name, "no such driver (registered: %v)", Drivers())
	}
	if r.Probe != nil {
		if _, err := r.Probe(root); err != nil {
			return nil, Wrap(err, "open driver", name)
		}
	}
	d, err := r.New(root, options)
	if err != nil {
		return nil, Wrap(err, "open driver", name)
	}
	return d, nil
}

// Available probes every registered driver for root and says for each
// whether it can run on this host and, if not, why.
func Available(root string) []Availability {
	var out []Availability
	for _, name := range Drivers() {
		registryMu.Lock()
		r := registry[name]
		registryMu.Unlock()
		a := Availability{Name: name, Doc: r.Doc, Usable: true}
		if r.Probe != nil {
			features, err := r.Probe(root)
			a.Features = features
			if err != nil {
				a.Usable = false
				a.Reason = err.Error()
			}
		}
		out = append(out, a)
	}
	return out
}

// ParseOptions turns "key=value" strings into a map; a string without "="
// maps to "true".
func ParseOptions(opts []string) (map[string]string, error) {
	m := make(map[string]string, len(opts))
	for _, o := range opts {
		if o == "" {
			return nil, Errorf(ErrInvalidArgument, "parse driver options", o, "empty option")
		}
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			v = "true"
		}
		if k == "" {
			return nil, Errorf(ErrInvalidArgument, "parse driver options", o, "option without a name")
		}
		m[k] = v
	}
	return m, nil
}

// String shows an Availability on one line.
func (a Availability) String() string {
	if a.Usable {
		return fmt.Sprintf("%s: usable %v", a.Name, a.Features)
	}
	return fmt.Sprintf("%s: unusable: %s", a.Name, a.Reason)
}
