package unionfs

import (
	"strconv"
	"strings"
)

// aufs's own mount options, so that an aufs line (an /etc/fstab entry,
// the data Docker's aufs driver passed) mounts as a union with its type
// changed (sum, nosum and wsum are ParseOptionsAt's own). Each of the
// others is one of three kinds:
//
//   - what this union does anyway, accepted and ignored: inode numbers
//     kept without an external table (xino and its truncation options),
//     hard links kept across copy-up (plink), O_DIRECT (dio), directories
//     renamed across branches (dirren), permission checks of a
//     directory's top-most copy only (dirperm1), opaque directories made
//     only where a whiteout needs them (diropq=w), POSIX ACLs (acl),
//     whiteouts hidden (noshwh), the create and copy-up policies (with
//     one rw branch every policy picks it), the readdir tuning numbers,
//     and log verbosity;
//   - a weaker guarantee aufs can be asked for, met by the stronger one
//     this union gives: noplink (links kept anyway), nodio (O_DIRECT
//     works anyway), nodirren (no EXDEV to fall back from);
//   - what it cannot do, refused with a message saying so (see
//     aufsRefused).

// aufsIgnored are aufs's flag options this union meets as it is.
var aufsIgnored = map[string]bool{
	"noxino": true, "trunc_xino": true, "notrunc_xino": true,
	"trunc_xib": true, "notrunc_xib": true,
	"plink": true, "noplink": true, "clean_plink": true,
	"dio": true, "nodio": true,
	"dirren": true, "nodirren": true,
	"dirperm1": true,
	"diropq=w": true, "diropq=whiteouted": true,
	"acl":       true,
	"noshwh":    true,
	"warn_perm": true, "nowarn_perm": true,
	"verbose": true, "v": true, "noverbose": true, "quiet": true, "q": true, "silent": true,
}

// aufsRefused are aufs options this union cannot honour, with why.
var aufsRefused = map[string]string{
	"shwh":          "whiteouts are never shown",
	"diropq=a":      "a new directory is made opaque only where a whiteout needs it (diropq=w)",
	"diropq=always": "a new directory is made opaque only where a whiteout needs it (diropq=w)",
	"nodirperm1":    "permissions are checked on a directory's top-most copy only (dirperm1)",
	"noacl":         "POSIX ACLs are always checked",
}

// aufsBranchEdits are aufs's remount options that edit the branch stack.
var aufsBranchEdits = map[string]bool{
	"add": true, "ins": true, "append": true, "prepend": true, "del": true, "mod": true, "idel": true, "imod": true,
}

// aufsCreatePolicies and aufsCopyupPolicies are the policy names aufs
// takes for create= and cpup=; the number of arguments (after ':') each
// takes, as the valid counts.
var (
	aufsCreatePolicies = map[string][]int{
		"tdp": {0}, "top-down-parent": {0}, "rr": {0}, "round-robin": {0},
		"mfs": {0, 1}, "most-free-space": {0, 1}, "pmfs": {0, 1},
		"tdmfs": {1, 2}, "mfsrr": {1, 2}, "pmfsrr": {1, 2},
	}
	aufsCopyupPolicies = map[string][]int{
		"tdp": {0}, "top-down-parent": {0}, "bup": {0}, "bottom-up-parent": {0}, "bu": {0}, "bottom-up": {0},
	}
)

// aufsOption checks opt (key=val when hasVal) as an aufs mount option:
// known says it is one, err that it is one this union refuses or whose
// value is malformed.
func aufsOption(opt, key, val string, hasVal bool) (known bool, err error) {
	if aufsIgnored[opt] {
		return true, nil
	}
	if why, ok := aufsRefused[opt]; ok {
		return true, specBadf("aufs option %s is not supported: %s", opt, why)
	}
	edit, _, _ := strings.Cut(opt, ":")
	if aufsBranchEdits[edit] || aufsBranchEdits[key] && hasVal {
		return true, specBadf("aufs option %s edits a mounted stack: use unionctl branch add|del|mod or mount -o remount,%s on the live mount", opt, opt)
	}
	if !hasVal {
		return false, nil
	}
	switch key {
	case "xino", "trunc_xino_path":
		if val == "" {
			return true, specBadf("option %s: empty path", key)
		}
		return true, nil
	case "itrunc_xino", "dirwh", "rdcache":
		return true, aufsNumber(key, val)
	case "rdblk", "rdhash":
		if val == "def" {
			return true, nil
		}
		return true, aufsNumber(key, val)
	case "create", "create_policy":
		return true, aufsPolicy(key, val, aufsCreatePolicies)
	case "cpup", "copyup", "copyup_policy":
		return true, aufsPolicy(key, val, aufsCopyupPolicies)
	}
	return false, nil
}

// aufsNumber checks that val, the value of option key, is a
// non-negative integer.
func aufsNumber(key, val string) error {
	if _, err := strconv.ParseUint(val, 10, 31); err != nil {
		return specBadf("option %s=%s: want a non-negative integer below 2^31", key, val)
	}
	return nil
}

// aufsPolicy checks val, the value of option key, against policies:
// a name and the numbers it takes after ':'.
func aufsPolicy(key, val string, policies map[string][]int) error {
	parts := strings.Split(val, ":")
	counts, ok := policies[parts[0]]
	if !ok {
		return specBadf("option %s=%s: unknown policy %q", key, val, parts[0])
	}
	args := len(parts) - 1
	for _, c := range counts {
		if c == args {
			for _, a := range parts[1:] {
				if _, err := strconv.ParseUint(a, 10, 31); err != nil {
					return specBadf("option %s=%s: %q is not a non-negative integer", key, val, a)
				}
			}
			return nil
		}
	}
	return specBadf("option %s=%s: policy %s takes %v numbers after ':'", key, val, parts[0], counts)
}
