package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/unionstack/unionstack/graph"
)

var pruneCmd = &cobra.Command{
	Use:   "prune",
	Short: "remove every layer no image, container, mounted view or other layer uses",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		return withStore(func(s *graph.Store) error {
			removed, err := s.Prune(cmd.Context())
			for _, l := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed layer %s\n", l)
			}
			return err
		})
	},
}

func init() {
	rootCmd.AddCommand(pruneCmd)
}
