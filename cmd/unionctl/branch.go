package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/unionstack/unionstack/unionfs"
)

var branchCmd = &cobra.Command{
	Use:   "branch",
	Short: "list, add, delete and change the branches of a live union mount",
}

var branchLsCmd = &cobra.Command{
	Use:   "ls MOUNTPOINT",
	Short: "list the branches of a union mount, top first",
	Args:  cobra.ExactArgs(1),
	RunE:  runBranchLs,
}

// branchAddIndex is --index of `branch add`.
var branchAddIndex int

var branchAddCmd = &cobra.Command{
	Use:   "add [--index N] MOUNTPOINT DIR[=MODE]",
	Short: "add a branch to a live union mount (default: at the bottom, ro)",
	Long: `Add DIR as a branch of the union at MOUNTPOINT, at position N (0 is the top;
default: the bottom), with MODE ro (default), rr, or rw (only on top). The
new stack is checked first: no nesting, no duplicates.`,
	Args: cobra.ExactArgs(2),
	RunE: runBranchAdd,
}

var branchDelCmd = &cobra.Command{
	Use:     "del MOUNTPOINT DIR",
	Aliases: []string{"rm"},
	Short:   "delete a branch from a live union mount",
	Args:    cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		return mountExitError(unionfs.ControlDelBranch(args[0], args[1]))
	},
}

var branchModCmd = &cobra.Command{
	Use:   "mod MOUNTPOINT DIR=MODE",
	Short: "change a read-only branch of a live union mount between ro and rr",
	Long: `Set the mode of the read-only branch DIR of the union at MOUNTPOINT to ro
(its whiteouts and opaque markers count) or rr (they do not), as aufs's
remount mod: did. The rw branch stays rw while mounted.`,
	Args: cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		if !strings.Contains(args[1], "=") {
			return usagef("branch mod %s: want DIR=MODE (ro or rr)", args[1])
		}
		b, err := unionfs.ParseBranchArg(args[1])
		if err != nil {
			return usageError{fmt.Errorf("branch mod: %w", err)}
		}
		return mountExitError(unionfs.ControlModBranch(args[0], b.Path, b.Mode))
	},
}

func init() {
	branchAddCmd.Flags().IntVar(&branchAddIndex, "index", -1, "position of the new branch (0 = top; default: bottom)")
	branchCmd.AddCommand(branchLsCmd, branchAddCmd, branchDelCmd, branchModCmd)
	rootCmd.AddCommand(branchCmd)
}

// runBranchLs prints the stack: index, path, mode.
func runBranchLs(cmd *cobra.Command, args []string) error {
	branches, err := unionfs.ControlBranches(args[0])
	if err != nil {
		return mountExitError(err)
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "INDEX\tPATH\tMODE")
	for i, b := range branches {
		fmt.Fprintf(w, "%d\t%s\t%s\n", i, b.Path, unionfs.ModeName(b.Mode))
	}
	return w.Flush()
}

// runBranchAdd parses DIR[=MODE] and adds the branch.
func runBranchAdd(cmd *cobra.Command, args []string) error {
	b, err := unionfs.ParseBranchArg(args[1])
	if err != nil {
		return usageError{fmt.Errorf("branch add: %w", err)}
	}
	return mountExitError(unionfs.ControlAddBranch(args[0], b, branchAddIndex))
}
