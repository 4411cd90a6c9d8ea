package graph

import (
	"errors"
	"testing"
)

func TestParseFilters(t *testing.T) {
	info := Info{Kind: KindActive, Name: "n", Parent: "p", Labels: map[string]string{"a": "1", "b.c": "x==y", "e": ""}}
	cases := []struct {
		filters []string
		match   bool
	}{
		{nil, true},
		{[]string{"kind==Active"}, true},
		{[]string{"kind==active"}, true},
		{[]string{"kind==View"}, false},
		{[]string{"kind!=View"}, true},
		{[]string{"name==n", "parent==p"}, true},
		{[]string{"name==n", "parent==q"}, false},
		{[]string{"parent=="}, false},
		{[]string{"labels.a==1"}, true},
		{[]string{"labels.a==2"}, false},
		{[]string{"labels.a!=2"}, true},
		{[]string{"labels.b.c==x==y"}, true},
		{[]string{`labels.b.c=="x==y"`}, true},
		{[]string{"labels.e"}, true},
		{[]string{"labels.e=="}, true},
		{[]string{"labels.f"}, false},
		{[]string{"labels.f!=1"}, true},
	}
	for _, c := range cases {
		match, err := parseFilters(c.filters...)
		if err != nil {
			t.Errorf("%q: %v", c.filters, err)
			continue
		}
		if got := match(info); got != c.match {
			t.Errorf("%q matches %v, want %v", c.filters, got, c.match)
		}
	}
	for _, bad := range []string{"", "kind", "kind==", "kind==Bogus", "labels.", "labels.==x", "size==1", "==x", `name=="x`} {
		if _, err := parseFilters(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("filter %q: %v, want ErrInvalidArgument", bad, err)
		}
	}
}
