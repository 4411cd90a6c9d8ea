package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progressBar draws a one-line progress bar on a terminal. On anything
// else (a pipe, a file) it draws nothing, so scripts stay quiet.
type progressBar struct {
	w       io.Writer // nil: not a terminal
	label   string
	last    time.Time
	drawn   bool
	lastPct int
}

// newProgressBar returns a bar labelled label drawn on stderr when stderr is
// a terminal.
func newProgressBar(label string) *progressBar {
	p := &progressBar{label: label, lastPct: -1}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		p.w = os.Stderr
	}
	return p
}

// update is a progress callback: done of total bytes (total 0: unknown).
func (p *progressBar) update(done, total int64) {
	if p.w == nil {
		return
	}
	pct := -1
	if total > 0 {
		pct = int(done * 100 / total)
		if pct > 100 {
			pct = 100
		}
	}
	now := time.Now()
	if p.drawn && now.Sub(p.last) < 100*time.Millisecond && pct == p.lastPct {
		return
	}
	p.last, p.drawn, p.lastPct = now, true, pct
	fmt.Fprint(p.w, "\r"+p.line(done, total, pct)+"\x1b[K")
}

// line renders the bar.
func (p *progressBar) line(done, total int64, pct int) string {
	const width = 30
	if pct < 0 {
		return fmt.Sprintf("%s %s", p.label, humanBytes(done))
	}
	fill := pct * width / 100
	return fmt.Sprintf("%s [%s%s] %3d%% %s / %s", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), pct, humanBytes(done), humanBytes(total))
}

// finish ends the bar's line.
func (p *progressBar) finish() {
	if p.w != nil && p.drawn {
		fmt.Fprintln(p.w)
	}
}

// humanBytes renders n bytes as "12.3 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
