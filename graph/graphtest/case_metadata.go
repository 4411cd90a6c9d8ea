package graphtest

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/unionstack/unionstack/graph"
)

// testStatUpdateWalk: labels set at create and commit, Update of one label
// or all, and every Walk filter alone and combined.
func testStatUpdateWalk(t *testing.T, s *suite) {
	d, _ := Open(t, s.factory)
	ctx := context.Background()
	labels := func(kv ...string) graph.Opt {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return graph.WithLabels(m)
	}
	_, err := d.Prepare(ctx, "base-active", "", labels("ignored", "1"))
	must(t, err, "prepare base-active")
	must(t, d.Commit(ctx, "base", "base-active", labels("layer", "base", "tier", "a")), "commit base")
	_, err = d.Prepare(ctx, "active1", "base", labels("app", "x", "tier", "b"))
	must(t, err, "prepare active1")
	_, err = d.Prepare(ctx, "active2", "")
	must(t, err, "prepare active2")
	_, err = d.View(ctx, "view1", "base", labels("app", "y"))
	must(t, err, "view view1")

	if got := mustStat(t, d, "base").Labels; !reflect.DeepEqual(got, map[string]string{"layer": "base", "tier": "a"}) {
		t.Errorf("labels of base: %v, want those given to Commit", got)
	}
	if got := mustStat(t, d, "active2").Labels; len(got) != 0 {
		t.Errorf("labels of active2: %v, want none", got)
	}

	// Update one label; the others stay.
	before := mustStat(t, d, "active1")
	time.Sleep(2 * time.Millisecond) // so that Updated can move on a coarse clock
	info, err := d.Update(ctx, graph.Info{Name: "active1", Labels: map[string]string{"app": "z", "new": "1"}}, "labels.app")
	must(t, err, "update labels.app")
	wantLabels := map[string]string{"app": "z", "tier": "b"}
	if !reflect.DeepEqual(info.Labels, wantLabels) {
		t.Errorf("update labels.app returned labels %v, want %v", info.Labels, wantLabels)
	}
	after := mustStat(t, d, "active1")
	if !reflect.DeepEqual(after.Labels, wantLabels) {
		t.Errorf("stat after update labels.app: labels %v, want %v", after.Labels, wantLabels)
	}
	if after.Kind != before.Kind || after.Parent != before.Parent || !after.Created.Equal(before.Created) {
		t.Errorf("update changed more than labels: before %+v, after %+v", before, after)
	}
	if !after.Updated.After(before.Updated) {
		t.Errorf("update did not move Updated: before %v, after %v", before.Updated, after.Updated)
	}
	// Update without field paths, and with "labels", replaces all labels;
	// Kind and Parent in the argument are ignored.
	_, err = d.Update(ctx, graph.Info{Name: "active1", Kind: graph.KindCommitted, Parent: "x", Labels: map[string]string{"app": "x", "tier": "b", "only": "1"}})
	must(t, err, "update all labels")
	if got := mustStat(t, d, "active1"); !reflect.DeepEqual(got.Labels, map[string]string{"app": "x", "tier": "b", "only": "1"}) || got.Kind != graph.KindActive || got.Parent != "base" {
		t.Errorf("after update without field paths: %+v", got)
	}
	_, err = d.Update(ctx, graph.Info{Name: "view1", Labels: map[string]string{"app": "y", "v": "2"}}, "labels")
	must(t, err, "update labels of view1")
	if got := mustStat(t, d, "view1").Labels; !reflect.DeepEqual(got, map[string]string{"app": "y", "v": "2"}) {
		t.Errorf("labels of view1 after update \"labels\": %v", got)
	}
	_, err = d.Update(ctx, graph.Info{Name: "base", Labels: map[string]string{"tier": "c"}}, "labels.tier")
	must(t, err, "update a label of a committed snapshot")
	if got := mustStat(t, d, "base").Labels["tier"]; got != "c" {
		t.Errorf("label tier of base after update: %q, want c", got)
	}

	walks := []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"active1", "active2", "base", "view1"}},
		{[]string{"kind==Committed"}, []string{"base"}},
		{[]string{"kind==Active"}, []string{"active1", "active2"}},
		{[]string{"kind==View"}, []string{"view1"}},
		{[]string{"parent==base"}, []string{"active1", "view1"}},
		{[]string{"name==active2"}, []string{"active2"}},
		{[]string{"labels.app==x"}, []string{"active1"}},
		{[]string{"labels.app"}, []string{"active1", "view1"}},
		{[]string{"labels.app==nope"}, nil},
		{[]string{"kind==Active", "labels.tier==b"}, []string{"active1"}},
		{[]string{"kind==View", "labels.tier==b"}, nil},
		{[]string{"parent==base", "labels.app==y", "kind==View"}, []string{"view1"}},
	}
	for _, w := range walks {
		got := keysOf(t, d, w.filters...)
		var names []string
		for name, info := range got {
			names = append(names, name)
			if stat := mustStat(t, d, name); !sameInfo(stat, info) {
				t.Errorf("walk %v gave %+v for %s, stat gives %+v", w.filters, info, name, stat)
			}
		}
		sort.Strings(names)
		if !reflect.DeepEqual(names, w.want) {
			t.Errorf("walk %q: %q, want %q", w.filters, names, w.want)
		}
	}

	// Walk stops at the first error of fn and returns it.
	stop := errors.New("stop here")
	calls := 0
	err = d.Walk(ctx, func(ctx context.Context, info graph.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("walk whose fn fails: error %v after %d calls, want %v after 1", err, calls, stop)
	}
}
