package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/unionstack/unionstack/graph"
)

// containerFlags are the flags of the container subcommands.
var containerFlags struct {
	json bool
	name string
}

var containerCmd = &cobra.Command{
	Use:   "container",
	Short: "writable root filesystems on images: create, mount, commit, remove",
	Args:  cobra.NoArgs,
	RunE:  runGroup,
}

var containerCreateCmd = &cobra.Command{
	Use:   "create ID IMAGE",
	Short: "create a writable snapshot (a container's rw layer) on IMAGE",
	Args:  cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		return withStore(func(s *graph.Store) error {
			_, err := s.CreateContainer(cmd.Context(), args[0], args[1])
			return err
		})
	},
}

var containerLsCmd = &cobra.Command{
	Use:     "ls",
	Aliases: []string{"list"},
	Short:   "list containers",
	Args:    cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		return withStore(func(s *graph.Store) error {
			cs, err := s.Containers(cmd.Context())
			if err != nil {
				return err
			}
			if containerFlags.json {
				if cs == nil {
					cs = []graph.Container{}
				}
				return printJSON(cmd.OutOrStdout(), cs)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tIMAGE\tLAYER\tCREATED")
			for _, c := range cs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.ID, shortID(c.Image), shortID(c.Layer), c.Created.Local().Format("2006-01-02 15:04:05"))
			}
			return w.Flush()
		})
	},
}

var containerMountCmd = &cobra.Command{
	Use:   "mount ID DIR",
	Short: "mount a container's root filesystem, writable, at DIR",
	Args:  cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		return withStore(func(s *graph.Store) error {
			mounts, err := s.ContainerMounts(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return graph.MountAll(mounts, args[1])
		})
	},
}

var containerUmountCmd = &cobra.Command{
	Use:     "umount DIR",
	Aliases: []string{"unmount"},
	Short:   "unmount a container's root filesystem mounted at DIR",
	Args:    cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return graph.UnmountAll(args[0])
	},
}

var containerCommitCmd = &cobra.Command{
	Use:   "commit ID",
	Short: "commit a container's changes as a new layer (and, with --name, a new image)",
	Args:  cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return withStore(func(s *graph.Store) error {
			ctx := cmd.Context()
			l, err := s.CommitContainer(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "layer %s (diff %s)\n", l.ChainID, l.DiffID)
			if containerFlags.name == "" {
				return nil
			}
			c, err := s.Container(ctx, args[0])
			if err != nil {
				return err
			}
			src, err := s.Image(ctx, string(c.Image))
			if err != nil {
				return err
			}
			config, err := src.OCIConfig()
			if err != nil {
				return err
			}
			img, err := s.CreateImage(ctx, containerFlags.name, l.ChainID, config)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "image %s %s\n", img.ID, containerFlags.name)
			return nil
		})
	},
}

var containerRmCmd = &cobra.Command{
	Use:     "rm ID",
	Aliases: []string{"remove"},
	Short:   "remove a container and its writable layer (unmount it first)",
	Args:    cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return withStore(func(s *graph.Store) error {
			return s.RemoveContainer(cmd.Context(), args[0])
		})
	},
}

func init() {
	containerLsCmd.Flags().BoolVar(&containerFlags.json, "json", false, "print JSON")
	containerCommitCmd.Flags().StringVar(&containerFlags.name, "name", "", "also make an image NAME of the committed layer")
	containerCmd.AddCommand(containerCreateCmd, containerLsCmd, containerMountCmd, containerUmountCmd, containerCommitCmd, containerRmCmd)
	rootCmd.AddCommand(containerCmd)
}
