package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/unionstack/unionstack/graph"
)

var layerCmd = &cobra.Command{
	Use:   "layer",
	Short: "list, write out and remove layers",
	RunE:  runGroup,
}

var layerFlags struct {
	json   bool
	output string
}

var layerLsCmd = &cobra.Command{
	Use:     "ls",
	Aliases: []string{"list"},
	Short:   "list layers: ChainID, DiffID, parent, size, references",
	Args:    cobra.NoArgs,
	RunE:    runLayerLs,
}

var layerDiffCmd = &cobra.Command{
	Use:   "diff CHAINID|CONTAINER",
	Short: "write a layer's tar (byte for byte as imported), or a container's changes, to stdout or -o FILE",
	Args:  cobra.ExactArgs(1),
	RunE:  runLayerDiff,
}

var layerRmCmd = &cobra.Command{
	Use:     "rm CHAINID",
	Aliases: []string{"remove"},
	Short:   "remove a layer nothing references",
	Args:    cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return withStore(func(s *graph.Store) error {
			l, err := s.Layer(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := s.RemoveLayer(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed layer %s\n", l.ChainID)
			return nil
		})
	},
}

func init() {
	layerLsCmd.Flags().BoolVar(&layerFlags.json, "json", false, "print JSON")
	layerDiffCmd.Flags().StringVarP(&layerFlags.output, "output", "o", "", "write the tar to FILE instead of stdout")
	layerCmd.AddCommand(layerLsCmd, layerDiffCmd, layerRmCmd)
	rootCmd.AddCommand(layerCmd)
}

// runLayerLs lists the layers.
func runLayerLs(cmd *cobra.Command, args []string) error {
	return withStore(func(s *graph.Store) error {
		layers, err := s.Layers(cmd.Context())
		if err != nil {
			return err
		}
		out := make([]layerInfo, 0, len(layers))
		for _, l := range layers {
			out = append(out, layerInfoOf(l))
		}
		if layerFlags.json {
			return printJSON(cmd.OutOrStdout(), out)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "CHAIN ID\tDIFF ID\tPARENT\tDEPTH\tSIZE\tREFS")
		for _, l := range out {
			parent := "-"
			if l.Parent != "" {
				parent = shortID(l.Parent)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%d\n", shortID(l.ChainID), shortID(l.DiffID), parent, l.Depth, humanBytes(l.Size), l.RefCount)
		}
		return w.Flush()
	})
}

// runLayerDiff writes the tar of a layer or of a container's changes.
func runLayerDiff(cmd *cobra.Command, args []string) error {
	var w io.Writer = cmd.OutOrStdout()
	if layerFlags.output == "" && w == io.Writer(os.Stdout) && term.IsTerminal(int(os.Stdout.Fd())) {
		return usagef("layer diff: refusing to write a tar to a terminal (use -o FILE or a pipe)")
	}
	return withStore(func(s *graph.Store) error {
		id := args[0]
		_, cerr := s.Container(cmd.Context(), id)
		isContainer := cerr == nil
		if !isContainer {
			if _, err := s.Layer(cmd.Context(), id); err != nil {
				return err
			}
		}
		var f *os.File
		if layerFlags.output != "" {
			var err error
			if f, err = os.CreateTemp(dirOf(layerFlags.output), ".layer-*.tar"); err != nil {
				return fmt.Errorf("layer diff %s: %w", layerFlags.output, err)
			}
			defer os.Remove(f.Name())
			defer f.Close()
			w = f
		}
		var err error
		if isContainer {
			_, err = s.ContainerDiff(cmd.Context(), id, w)
		} else {
			_, err = s.WriteLayerTar(cmd.Context(), id, w)
		}
		if err != nil {
			return err
		}
		if f != nil {
			if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("layer diff %s: %w", layerFlags.output, err)
			}
			if err := os.Rename(f.Name(), layerFlags.output); err != nil {
				return fmt.Errorf("layer diff %s: %w", layerFlags.output, err)
			}
		}
		return nil
	})
}
