package unionfs

// The control protocol between unionctl and a mount daemon: one JSON
// object per line on the daemon's unix socket, a request answered by one
// response, any number per connection.

// controlRequest asks the daemon to do one thing.
type controlRequest struct {
	// Op is "ls", "add", "del", "mod", "edit" or "unmount".
	Op string `json:"op"`
	// Path is the branch directory of add, del and mod (absolute).
	Path string `json:"path,omitempty"`
	// Mode is the mode of an added branch ("rw", "ro", "rr"), or the
	// new mode of mod's.
	Mode string `json:"mode,omitempty"`
	// Index is where add inserts the branch (0 = top); -1 appends it at
	// the bottom.
	Index int `json:"index,omitempty"`
	// Edits are the add, del and mod requests an edit makes, in order,
	// all or none.
	Edits []controlRequest `json:"edits,omitempty"`
}

// controlResponse answers a controlRequest.
type controlResponse struct {
	OK bool `json:"ok"`
	// Error is the failure, when not OK.
	Error string `json:"error,omitempty"`
	// BadSpec says the request itself was wrong (ErrBadSpec).
	BadSpec bool `json:"bad_spec,omitempty"`
	// Branches is the stack after the request, top first.
	Branches []controlBranch `json:"branches,omitempty"`
	// Fallback is Server.Fallback: why the default udba=notify became
	// udba=reval.
	Fallback string `json:"fallback,omitempty"`
}

// controlBranch is a Branch on the wire.
type controlBranch struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
}

// controlBranches converts a stack for the wire.
func controlBranches(bs []Branch) []controlBranch {
	out := make([]controlBranch, len(bs))
	for i, b := range bs {
		out[i] = controlBranch{Path: b.Path, Mode: ModeName(b.Mode)}
	}
	return out
}
