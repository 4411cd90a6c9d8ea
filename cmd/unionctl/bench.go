package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/unionstack/unionstack/bench/fsbench"
	"github.com/unionstack/unionstack/unionfs"
)

// benchFSFlags are the flags of `unionctl bench fs`.
type benchFSFlags struct {
	dir    string
	only   []string
	scale  float64
	repeat int
	json   bool
	ufOpts string
}

// benchCmd is `unionctl bench`: the benchmarks, one subcommand each.
var benchCmd = &cobra.Command{
	Use:   "bench",
	Short: "benchmarks that compare drivers and filesystems side by side",
	Args: func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("bench: unknown benchmark %q (known: fs)", args[0])
		}
		return nil
	},
	RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
}

// newBenchFSCmd returns `unionctl bench fs`.
func newBenchFSCmd() *cobra.Command {
	var f benchFSFlags
	cmd := &cobra.Command{
		Use:   "fs",
		Short: "compare union filesystems: kernel overlayfs, fuse-overlayfs, unionfs-fuse, unionfs",
		Long: `Runs, side by side on freshly built identical branches, sequential read,
4k random read, cold and warm stat walks, create, unlink of lower files and
copy-up of a large file, through kernel overlayfs, fuse-overlayfs,
unionfs-fuse and unionstack's unionfs (mounted by this unionctl binary), three
times: with its defaults (udba=notify as root: cached for a day with the
branches watched, so outside changes to a branch show at once;
passthrough=on: descriptors opened before a copy-up see the data written
after it), as unionfs-udba-none, caching as long as fuse-overlayfs does
without watching, and
as unionfs-fast (udba=notify,passthrough=all: cached for a day with the
branches watched, lower files read by the kernel; a descriptor opened
before a copy-up keeps reading the lower file).
Each workload gets a fresh mount with the page cache dropped. Results are
ratios to kernel overlayfs (overlay time / fs time: higher is better) and
absolute times; with --repeat N each workload runs N times and the best
time counts. The resident memory of each FUSE daemon, once mounted and
after the warm stat walk, follows. Needs root; takes a few minutes and,
for each filesystem, about 1.3 GiB + 0.5 GiB per round of scratch space
at --scale 1 (kept until the end, so removing one filesystem's files
cannot slow the next one's creates, unless the disk runs short). On an
ext4 without a journal, inode allocation skips the inodes freed in the
last minutes one by one: leave a run some minutes after the last one (or
any mass removal) on the same filesystem, or its creates measure that.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("bench fs takes no arguments, got %q", strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return runBenchFS(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", "", "directory for the scratch branches (default: a temp dir under "+fsbench.DefaultScratchParent+")")
	fl.StringSliceVar(&f.only, "only", nil, "filesystems to run, comma-separated: "+strings.Join(fsbench.Names, ","))
	fl.Float64Var(&f.scale, "scale", 1.0, "scale of sizes and counts (0.01: 10 MiB and 500 files, for a smoke run)")
	fl.IntVar(&f.repeat, "repeat", 1, fmt.Sprintf("run each workload this many times (1-%d) and count the best", fsbench.MaxRepeat))
	fl.BoolVar(&f.json, "json", false, "print the raw numbers as JSON")
	fl.StringVar(&f.ufOpts, "unionfs-opts", "", "mount options for the unionfs column, passed to unionctl mount -o (e.g. passthrough=off; default: none); unionfs-udba-none and unionfs-fast keep theirs")
	return cmd
}

func init() {
	benchCmd.AddCommand(newBenchFSCmd())
	rootCmd.AddCommand(benchCmd)
}

// runBenchFS runs the filesystem comparison and prints the report.
func runBenchFS(cmd *cobra.Command, f benchFSFlags) error {
	sizes, err := fsbench.ForScale(f.scale)
	if err != nil {
		return usagef("bench fs: --scale: %v", err)
	}
	if f.repeat < 1 || f.repeat > fsbench.MaxRepeat {
		return usagef("bench fs: --repeat %d: must be 1 to %d", f.repeat, fsbench.MaxRepeat)
	}
	sizes.Repeat = f.repeat
	if f.dir != "" {
		st, err := os.Stat(f.dir)
		if err != nil {
			return usagef("bench fs: --dir: %v", err)
		}
		if !st.IsDir() {
			return usagef("bench fs: --dir %s: not a directory", f.dir)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench fs: finding the unionctl binary: %w", err)
	}
	filesystems, err := fsbench.Select(f.only, exe)
	if err != nil {
		return usagef("bench fs: --only: %v", err)
	}
	if err := checkBenchUnionfsOpts(f.ufOpts); err != nil {
		return err
	}
	for _, fs := range filesystems {
		if u, ok := fs.(*fsbench.UnionctlFS); ok && u.Name() == fsbench.UnionFS {
			u.Opts = f.ufOpts
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("bench fs: needs root (it mounts filesystems and drops the page cache)")
	}

	// Ctrl-C and SIGTERM cancel the run; Run then unmounts everything and
	// removes its scratch directory before returning.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, runErr := fsbench.Run(ctx, fsbench.Config{
		Scratch:  f.dir,
		FS:       filesystems,
		Sizes:    sizes,
		Verify:   true,
		Progress: cmd.ErrOrStderr(),
	})
	if rep != nil {
		out := cmd.OutOrStdout()
		var perr error
		if f.json {
			perr = rep.WriteJSON(out)
		} else {
			perr = rep.WriteTable(out)
		}
		runErr = errors.Join(runErr, perr)
	}
	if runErr != nil {
		return runErr
	}
	var failed []string
	for _, res := range rep.Results {
		if res.Failed() || (len(f.only) > 0 && res.Skipped != "") {
			failed = append(failed, res.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench fs: %s failed or could not run (see above)", strings.Join(failed, ", "))
	}
	return nil
}

// checkBenchUnionfsOpts rejects --unionfs-opts that unionctl mount would
// refuse, or that would change what is measured (other branches, a
// read-only union), before any branch is built.
func checkBenchUnionfsOpts(opts string) error {
	if opts == "" {
		return nil
	}
	spec, err := unionfs.ParseOptions("dirs=/upper=rw:/lower=ro," + opts)
	if err != nil {
		return usagef("bench fs: --unionfs-opts %q: %v", opts, err)
	}
	if len(spec.Branches) != 2 || spec.Branches[0].Path != "/upper" || spec.ReadOnly {
		return usagef("bench fs: --unionfs-opts %q: branches and ro are set by the benchmark", opts)
	}
	return nil
}
