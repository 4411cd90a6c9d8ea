package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/unionstack/unionstack/graph"
)

var driverCmd = &cobra.Command{
	Use:   "driver",
	Short: "storage drivers",
	RunE:  runGroup,
}

var driverFlags struct{ json bool }

// driverStatus is one driver of `driver ls --json`.
type driverStatus struct {
	Name     string            `json:"name"`
	Usable   bool              `json:"usable"`
	Reason   string            `json:"reason,omitempty"`
	Doc      string            `json:"doc,omitempty"`
	Features map[string]string `json:"features"`
}

var driverLsCmd = &cobra.Command{
	Use:     "ls",
	Aliases: []string{"list"},
	Short:   "list the drivers this binary has: whether each can run here, why not, and what it found",
	Args:    cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		var out []driverStatus
		for _, a := range graph.Available(global.root) {
			f := a.Features
			if f == nil {
				f = map[string]string{}
			}
			out = append(out, driverStatus{Name: a.Name, Usable: a.Usable, Reason: a.Reason, Doc: a.Doc, Features: f})
		}
		if driverFlags.json {
			if out == nil {
				out = []driverStatus{}
			}
			return printJSON(cmd.OutOrStdout(), out)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "DRIVER\tUSABLE\tDETAILS")
		for _, d := range out {
			details := d.Reason
			if d.Usable {
				details = featureList(d.Features)
				if details == "" {
					details = d.Doc
				}
			}
			fmt.Fprintf(w, "%s\t%v\t%s\n", d.Name, d.Usable, details)
		}
		return w.Flush()
	},
}

// featureList renders features as "k=v, k=v", sorted.
func featureList(f map[string]string) string {
	var kv []string
	for k, v := range f {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ", ")
}

func init() {
	driverLsCmd.Flags().BoolVar(&driverFlags.json, "json", false, "print JSON")
	driverCmd.AddCommand(driverLsCmd)
	rootCmd.AddCommand(driverCmd)
}
