package graph

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// overlayDataLimit is the longest data string mount(2) takes: one page,
// with its NUL.
const overlayDataLimit = 4096 - 1

// fsconfigStringLimit is the longest string value fsconfig(2) takes.
const fsconfigStringLimit = 255

// mountOverlay mounts an overlay: through mount(2) when its data fits a
// page, else (or when it uses "lowerdir+=" / "datadir+=") through fsopen.
func mountOverlay(m Mount, o mountOptions, t *mountTarget) error {
	data := strings.Join(o.data, ",")
	useFsopen := len(data) > overlayDataLimit
	for _, d := range o.data {
		if strings.HasPrefix(d, "lowerdir+=") || strings.HasPrefix(d, "datadir+=") {
			useFsopen = true
		}
	}
	if useFsopen {
		return mountOverlayFsopen(m, o, t)
	}
	source := m.Source
	if source == "" {
		source = "overlay"
	}
	if err := unix.Mount(source, t.procPath(), "overlay", o.flags, data); err != nil {
		return &os.PathError{Op: fmt.Sprintf("mount overlay (data %q) on", data), Path: t.path, Err: err}
	}
	return nil
}

// overlayParam is one fsconfig call.
type overlayParam struct {
	key, value string
	flag       bool // a flag without a value
}

// overlayParams converts overlay data options to fsconfig parameters:
// "lowerdir=A:B::C" becomes lowerdir+=A, lowerdir+=B, datadir+=C, since one
// fsconfig string holds at most 255 bytes.
func overlayParams(data []string) ([]overlayParam, error) {
	var ps []overlayParam
	for _, d := range data {
		k, v, ok := strings.Cut(d, "=")
		if !ok {
			ps = append(ps, overlayParam{key: k, flag: true})
			continue
		}
		if k != "lowerdir" {
			ps = append(ps, overlayParam{key: k, value: v})
			continue
		}
		layers, dataLayers, hasData := strings.Cut(v, "::")
		for _, l := range splitOverlayDirs(layers) {
			ps = append(ps, overlayParam{key: "lowerdir+", value: l})
		}
		if hasData {
			for _, l := range splitOverlayDirs(strings.ReplaceAll(dataLayers, "::", ":")) {
				ps = append(ps, overlayParam{key: "datadir+", value: l})
			}
		}
	}
	for _, p := range ps {
		if !p.flag && p.value == "" && (p.key == "lowerdir+" || p.key == "datadir+") {
			return nil, fmt.Errorf("overlay option %s with an empty directory: %w", p.key, ErrInvalidArgument)
		}
	}
	return ps, nil
}

// splitOverlayDirs splits a colon separated list of directories; "\:" is
// a colon in a name and "\\" a backslash, as overlayfs reads them.
func splitOverlayDirs(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == ':':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, cur.String())
}

// mountOverlayFsopen mounts an overlay with fsopen, fsconfig, fsmount and
// move_mount. Directories longer than fsconfig takes as a string are
// passed as open descriptors.
func mountOverlayFsopen(m Mount, o mountOptions, t *mountTarget) error {
	params, err := overlayParams(o.data)
	if err != nil {
		return err
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	fail := func(what string, err error) error {
		if msg := fsMessages(fsfd); msg != "" {
			return fmt.Errorf("%s: %w (kernel says: %s)", what, err, msg)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	source := m.Source
	if source == "" {
		source = "overlay"
	}
	if err := unix.FsconfigSetString(fsfd, "source", source); err != nil {
		return fail("fsconfig overlay source", err)
	}
	for _, p := range params {
		if err := fsconfigParam(fsfd, p); err != nil {
			return fail(fmt.Sprintf("fsconfig overlay %s=%q", p.key, p.value), err)
		}
	}
	for _, sb := range []struct {
		ms   uintptr
		name string
	}{{unix.MS_RDONLY, "ro"}, {unix.MS_SYNCHRONOUS, "sync"}, {unix.MS_DIRSYNC, "dirsync"}, {unix.MS_LAZYTIME, "lazytime"}} {
		if o.flags&sb.ms != 0 {
			if err := unix.FsconfigSetFlag(fsfd, sb.name); err != nil {
				return fail("fsconfig overlay "+sb.name, err)
			}
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fail("create overlay superblock", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(mountAttrs(o.flags)))
	if err != nil {
		return fail("fsmount overlay", err)
	}
	defer unix.Close(mfd)
	err = unix.MoveMount(mfd, "", t.fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	if err != nil {
		return &os.PathError{Op: "move overlay mount to", Path: t.path, Err: err}
	}
	return nil
}

// fsconfigParam sets one parameter; a directory too long for a string is
// opened and passed as a descriptor.
func fsconfigParam(fsfd int, p overlayParam) error {
	if p.flag {
		return unix.FsconfigSetFlag(fsfd, p.key)
	}
	if len(p.value) <= fsconfigStringLimit {
		return unix.FsconfigSetString(fsfd, p.key, p.value)
	}
	switch p.key {
	case "lowerdir+", "datadir+", "upperdir", "workdir":
	default:
		return fmt.Errorf("value is %d bytes, fsconfig takes at most %d: %w", len(p.value), fsconfigStringLimit, ErrInvalidArgument)
	}
	dfd, err := unix.Open(p.value, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open overlay layer", Path: p.value, Err: err}
	}
	defer unix.Close(dfd)
	return unix.FsconfigSetFd(fsfd, p.key, dfd)
}

// fsMessages reads the error messages the kernel left on an fs context.
func fsMessages(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break // ENODATA: no more messages
		}
		msg := strings.TrimSpace(string(buf[:n]))
		msg = strings.TrimPrefix(strings.TrimPrefix(msg, "e "), "w ")
		msgs = append(msgs, msg)
	}
	return strings.Join(msgs, "; ")
}
