package graph

import (
	"strconv"
	"strings"
)

// filterFunc reports whether a snapshot matches.
type filterFunc func(Info) bool

// parseFilters parses Walk filters; a snapshot must match all of them. Each
// filter is one condition:
//
//	kind==Active        kind!=Committed     (View, Active, Committed; any case)
//	parent==KEY         parent==            (a base snapshot)
//	name==KEY
//	labels.KEY==VALUE   labels.KEY!=VALUE
//	labels.KEY          (the label is present)
//
// A value may be written as a Go quoted string ("a \"b\""). Anything else
// is ErrInvalidArgument naming the filter.
func parseFilters(filters ...string) (filterFunc, error) {
	var fs []filterFunc
	for _, f := range filters {
		fn, err := parseFilter(f)
		if err != nil {
			return nil, err
		}
		fs = append(fs, fn)
	}
	return func(info Info) bool {
		for _, fn := range fs {
			if !fn(info) {
				return false
			}
		}
		return true
	}, nil
}

func parseFilter(f string) (filterFunc, error) {
	const op = "parse filter"
	field, value, neg, hasOp := splitFilter(f)
	if field == "" {
		return nil, Errorf(ErrInvalidArgument, op, f, "no field; want kind==, parent==, name== or labels.KEY[==VALUE]")
	}
	if strings.HasPrefix(value, `"`) {
		v, err := strconv.Unquote(value)
		if err != nil {
			return nil, Errorf(ErrInvalidArgument, op, f, "bad quoted value %s", value)
		}
		value = v
	}
	eq := func(ok bool) bool { return ok != neg }
	if label, ok := strings.CutPrefix(field, "labels."); ok {
		if label == "" {
			return nil, Errorf(ErrInvalidArgument, op, f, "empty label name")
		}
		if !hasOp {
			return func(i Info) bool { _, ok := i.Labels[label]; return ok }, nil
		}
		return func(i Info) bool { v, ok := i.Labels[label]; return eq(ok && v == value) }, nil
	}
	if !hasOp {
		return nil, Errorf(ErrInvalidArgument, op, f, "field %q needs == or != and a value", field)
	}
	switch field {
	case "kind":
		k, err := ParseKind(value)
		if err != nil {
			return nil, Errorf(ErrInvalidArgument, op, f, "unknown kind %q (want View, Active or Committed)", value)
		}
		return func(i Info) bool { return eq(i.Kind == k) }, nil
	case "parent":
		return func(i Info) bool { return eq(i.Parent == value) }, nil
	case "name":
		return func(i Info) bool { return eq(i.Name == value) }, nil
	}
	return nil, Errorf(ErrInvalidArgument, op, f, "unknown field %q; want kind, parent, name or labels.KEY", field)
}

// splitFilter splits "FIELD==VALUE" or "FIELD!=VALUE"; a bare "FIELD" has
// no operator.
func splitFilter(f string) (field, value string, neg, hasOp bool) {
	i, j := strings.Index(f, "=="), strings.Index(f, "!=")
	switch {
	case i < 0 && j < 0:
		return strings.TrimSpace(f), "", false, false
	case j < 0 || (i >= 0 && i < j):
		return strings.TrimSpace(f[:i]), f[i+2:], false, true
	default:
		return strings.TrimSpace(f[:j]), f[j+2:], true, true
	}
}
