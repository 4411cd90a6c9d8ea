package fsbench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Report holds the measurements of one Run.
type Report struct {
	Sizes     Sizes
	Scratch   string
	Workloads []Workload
	Results   []*FSResult
	// CPUs and LoadAvg describe the host when the run started: numbers
	// taken on a busy machine are to be read with care.
	CPUs    int
	LoadAvg string
}

// FSResult is what one filesystem did.
type FSResult struct {
	// Name of the filesystem.
	Name string
	// Skipped says why the filesystem was not run (not available here).
	Skipped string
	// Err is the failure that stopped this filesystem early (branches not
	// built, union not mounted).
	Err string
	// Times of the measured part of each workload that succeeded: the
	// best of its rounds.
	Times map[string]time.Duration
	// Runs are the times of every round that succeeded.
	Runs map[string][]time.Duration
	// Errors of the workloads that failed.
	Errors map[string]string
	// Verified is true when Verify found every workload's effects right.
	Verified bool
	// VerifyErr says what Verify found wrong (or why it did not run).
	VerifyErr string
	// RSSAtMount and RSSAfterWalk are the resident memory, in bytes, of
	// the filesystem's daemon once mounted and after the warm stat walk
	// (the round with the most); zero without a daemon of its own.
	RSSAtMount, RSSAfterWalk int64

	tree []string // merged tree after the workloads, for comparison
}

// Failed reports whether the filesystem ran and something went wrong.
func (r *FSResult) Failed() bool {
	return r.Skipped == "" && (r.Err != "" || len(r.Errors) > 0 || r.VerifyErr != "")
}

// Tree returns the merged tree listing recorded by Verify.
func (r *FSResult) Tree() []string { return r.tree }

// Result returns the result of the filesystem called name, or nil.
func (r *Report) Result(name string) *FSResult {
	for _, res := range r.Results {
		if res.Name == name {
			return res
		}
	}
	return nil
}

// Ratio returns overlay time / fs time for a workload: higher is better,
// 1.0 is as fast as kernel overlayfs. ok is false when either is missing.
func (r *Report) Ratio(workload, fs string) (ratio float64, ok bool) {
	ovl, res := r.Result(Overlay), r.Result(fs)
	if ovl == nil || res == nil {
		return 0, false
	}
	base, ok1 := ovl.Times[workload]
	t, ok2 := res.Times[workload]
	if !ok1 || !ok2 || t <= 0 {
		return 0, false
	}
	return float64(base) / float64(t), true
}

// Failed reports whether any filesystem that ran failed.
func (r *Report) Failed() bool {
	for _, res := range r.Results {
		if res.Failed() {
			return true
		}
	}
	return false
}

// compareTrees marks, as a verify error, each verified filesystem whose
// merged tree differs from the first verified one's.
func (r *Report) compareTrees() {
	var ref *FSResult
	for _, res := range r.Results {
		if !res.Verified {
			continue
		}
		if ref == nil {
			ref = res
			continue
		}
		if d := DiffTrees(ref.tree, res.tree); d != "" {
			res.Verified = false
			res.VerifyErr = fmt.Sprintf("verify: merged tree differs from %s's (first: %s, second: %s): %s", ref.Name, ref.Name, res.Name, d)
		}
	}
}

// ran returns the results of the filesystems that were not skipped.
func (r *Report) ran() []*FSResult {
	var out []*FSResult
	for _, res := range r.Results {
		if res.Skipped == "" {
			out = append(out, res)
		}
	}
	return out
}

// WriteTable prints the ratios to kernel overlayfs and the absolute times
// as tables (rows = workloads, columns = filesystems), then notes on
// skipped, failed and verified filesystems.
func (r *Report) WriteTable(w io.Writer) error {
	ran := r.ran()
	var b strings.Builder
	fmt.Fprintf(&b, "unionctl bench fs: scale %g (%s file, %d random reads, %d files walked, %d created, %d unlinked, %s copied up)\n",
		r.Sizes.Scale, humanBytes(r.Sizes.SeqBytes), r.Sizes.RandReads, r.Sizes.StatFiles, r.Sizes.CreateFiles, r.Sizes.UnlinkFiles, humanBytes(r.Sizes.CopyUpBytes))
	fmt.Fprintf(&b, "host: %d CPUs, load average %s at the start", r.CPUs, r.LoadAvg)
	if r.Sizes.rounds() > 1 {
		fmt.Fprintf(&b, "; best of %d rounds per workload", r.Sizes.rounds())
	}
	b.WriteString("\n\n")
	if r.Result(Overlay) != nil && r.Result(Overlay).Skipped == "" {
		b.WriteString("ratio to kernel overlayfs (overlay time / fs time: higher is better, 1.00 = as fast as the kernel)\n")
		r.writeGrid(&b, ran, func(wl string, res *FSResult) string {
			if ratio, ok := r.Ratio(wl, res.Name); ok {
				return fmt.Sprintf("%.2f", ratio)
			}
			return cellMissing(wl, res)
		})
		b.WriteString("\n")
	} else {
		b.WriteString("no ratios: kernel overlayfs was not measured\n\n")
	}
	b.WriteString("time of the measured operation\n")
	r.writeGrid(&b, ran, func(wl string, res *FSResult) string {
		if t, ok := res.Times[wl]; ok {
			return fmtDuration(t)
		}
		return cellMissing(wl, res)
	})
	r.writeMemory(&b, ran)
	var notes []string
	for _, res := range r.Results {
		switch {
		case res.Skipped != "":
			notes = append(notes, fmt.Sprintf("%s: skipped: %s", res.Name, res.Skipped))
		case res.Err != "":
			notes = append(notes, fmt.Sprintf("%s: failed: %s", res.Name, res.Err))
		}
		if res.Skipped == "" {
			for _, wl := range r.Workloads {
				if e, ok := res.Errors[wl.Name]; ok && e != res.Err {
					notes = append(notes, fmt.Sprintf("%s: %s", res.Name, e))
				}
			}
			if res.VerifyErr != "" {
				notes = append(notes, fmt.Sprintf("%s: %s", res.Name, res.VerifyErr))
			} else if res.Verified {
				notes = append(notes, fmt.Sprintf("%s: verified (files created, unlinked and copied up as expected; same merged tree)", res.Name))
			}
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeMemory writes the resident memory of each FUSE daemon at mount and
// after the warm stat walk, and what it grew by per file of the tree.
func (r *Report) writeMemory(w io.Writer, ran []*FSResult) {
	var rows [][]string
	for _, res := range ran {
		if res.RSSAfterWalk == 0 {
			continue
		}
		per := "-"
		if r.Sizes.StatFiles > 0 {
			per = fmt.Sprintf("%d B", (res.RSSAfterWalk-res.RSSAtMount)/int64(r.Sizes.StatFiles))
		}
		rows = append(rows, []string{res.Name, fmtMiB(res.RSSAtMount), fmtMiB(res.RSSAfterWalk), per})
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nresident memory of the FUSE daemon (after the warm walk: names and attributes of %d files cached)\n", r.Sizes.StatFiles)
	rows = append([][]string{{"filesystem", "at mount", "after walk", "growth per file"}}, rows...)
	writeRows(w, rows)
}

// writeRows writes rows as a table: the first column left-aligned, the
// others right-aligned.
func writeRows(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, row := range rows {
		line := fmt.Sprintf("%-*s", widths[0], row[0])
		for i, c := range row[1:] {
			line += fmt.Sprintf("  %*s", widths[i+1], c)
		}
		fmt.Fprintln(w, line)
	}
}

// fmtMiB formats a byte count in MiB with one decimal.
func fmtMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// writeGrid writes a workloads x filesystems table of cell values: labels
// left-aligned, numbers right-aligned.
func (r *Report) writeGrid(w io.Writer, ran []*FSResult, cell func(workload string, res *FSResult) string) {
	rows := [][]string{{"workload"}}
	for _, res := range ran {
		rows[0] = append(rows[0], res.Name)
	}
	for _, wl := range r.Workloads {
		row := []string{wl.Label(r.Sizes)}
		for _, res := range ran {
			row = append(row, cell(wl.Name, res))
		}
		rows = append(rows, row)
	}
	writeRows(w, rows)
}

// cellMissing is the table cell of a workload that has no number.
func cellMissing(workload string, res *FSResult) string {
	if _, failed := res.Errors[workload]; failed {
		return "error"
	}
	return "-"
}

// fmtDuration formats d with about three significant digits.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
}

// jsonReport is the shape of WriteJSON's output.
type jsonReport struct {
	Sizes       Sizes          `json:"sizes"`
	CPUs        int            `json:"cpus"`
	LoadAvg     string         `json:"loadavg"`
	Workloads   []jsonWorkload `json:"workloads"`
	Filesystems []jsonFS       `json:"filesystems"`
}

type jsonWorkload struct {
	Name  string `json:"name"`
	Label string `json:"label"`
}

type jsonFS struct {
	Name      string                `json:"name"`
	Skipped   string                `json:"skipped,omitempty"`
	Error     string                `json:"error,omitempty"`
	Verified  bool                  `json:"verified"`
	VerifyErr string                `json:"verify_error,omitempty"`
	Results   map[string]jsonResult `json:"results,omitempty"`
	// Resident memory of the daemon, when it has one (see FSResult).
	RSSAtMount   int64 `json:"daemon_rss_at_mount_bytes,omitempty"`
	RSSAfterWalk int64 `json:"daemon_rss_after_warm_walk_bytes,omitempty"`
}

type jsonResult struct {
	RunsNs         []int64  `json:"runs_ns,omitempty"`
	Nanoseconds    int64    `json:"ns,omitempty"`
	Seconds        float64  `json:"seconds,omitempty"`
	RatioToOverlay *float64 `json:"ratio_to_overlay,omitempty"`
	Error          string   `json:"error,omitempty"`
}

// WriteJSON prints the raw numbers as JSON: per filesystem and workload
// the best time (ns and seconds), every round's time, the ratio to overlay
// and any error, and per FUSE daemon its resident memory.
func (r *Report) WriteJSON(w io.Writer) error {
	out := jsonReport{Sizes: r.Sizes, CPUs: r.CPUs, LoadAvg: r.LoadAvg}
	for _, wl := range r.Workloads {
		out.Workloads = append(out.Workloads, jsonWorkload{wl.Name, wl.Label(r.Sizes)})
	}
	for _, res := range r.Results {
		jf := jsonFS{Name: res.Name, Skipped: res.Skipped, Error: res.Err, Verified: res.Verified, VerifyErr: res.VerifyErr,
			RSSAtMount: res.RSSAtMount, RSSAfterWalk: res.RSSAfterWalk}
		if res.Skipped == "" {
			jf.Results = map[string]jsonResult{}
			for _, wl := range r.Workloads {
				var jr jsonResult
				if t, ok := res.Times[wl.Name]; ok {
					jr.Nanoseconds, jr.Seconds = int64(t), t.Seconds()
				}
				for _, t := range res.Runs[wl.Name] {
					jr.RunsNs = append(jr.RunsNs, int64(t))
				}
				if ratio, ok := r.Ratio(wl.Name, res.Name); ok {
					jr.RatioToOverlay = &ratio
				}
				jr.Error = res.Errors[wl.Name]
				jf.Results[wl.Name] = jr
			}
		}
		out.Filesystems = append(out.Filesystems, jf)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
