package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/unionstack/unionstack/graph"
)

var imageCmd = &cobra.Command{
	Use:   "image",
	Short: "import, list, inspect, export, mount and remove images",
	RunE:  runGroup,
}

var imageFlags struct {
	name        string
	json        bool
	force       bool
	compression string
	format      string
}

var imageImportCmd = &cobra.Command{
	Use:   "import PATH",
	Short: "import an OCI image layout directory or a docker-save archive (- reads one from stdin)",
	Args:  cobra.ExactArgs(1),
	RunE:  runImageImport,
}

var imageLsCmd = &cobra.Command{
	Use:     "ls",
	Aliases: []string{"list"},
	Short:   "list images",
	Args:    cobra.NoArgs,
	RunE:    runImageLs,
}

var imageInspectCmd = &cobra.Command{
	Use:   "inspect REF",
	Short: "show an image's config (entrypoint, cmd, env, workdir, user) and layers",
	Args:  cobra.ExactArgs(1),
	RunE:  runImageInspect,
}

var imageExportCmd = &cobra.Command{
	Use:   "export REF DIR",
	Short: "export an image as an OCI image layout into DIR (or, with --format docker, a docker-save tar; - for stdout)",
	Args:  cobra.ExactArgs(2),
	RunE:  runImageExport,
}

var imageRmCmd = &cobra.Command{
	Use:     "rm REF",
	Aliases: []string{"remove"},
	Short:   "remove an image (or one of its names) and the layers nothing else uses",
	Args:    cobra.ExactArgs(1),
	RunE:    runImageRm,
}

var imageMountCmd = &cobra.Command{
	Use:   "mount REF DIR",
	Short: "mount a read-only view of an image's root filesystem at DIR",
	Args:  cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		return withStore(func(s *graph.Store) error {
			return s.MountImage(cmd.Context(), args[0], args[1])
		})
	},
}

var imageUmountCmd = &cobra.Command{
	Use:     "umount DIR",
	Aliases: []string{"unmount"},
	Short:   "unmount an image view mounted by `image mount` and remove it",
	Args:    cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return withStore(func(s *graph.Store) error {
			return s.UnmountImage(cmd.Context(), args[0])
		})
	},
}

func init() {
	imageImportCmd.Flags().StringVar(&imageFlags.name, "name", "", "name the image (instead of the names in the archive)")
	imageLsCmd.Flags().BoolVar(&imageFlags.json, "json", false, "print JSON")
	imageInspectCmd.Flags().BoolVar(&imageFlags.json, "json", false, "print JSON")
	imageExportCmd.Flags().StringVar(&imageFlags.compression, "compression", "gzip", "layer compression of an OCI layout: gzip, zstd or none")
	imageExportCmd.Flags().StringVar(&imageFlags.format, "format", "oci", "oci (an OCI image layout directory) or docker (a docker-save tar file)")
	imageRmCmd.Flags().BoolVarP(&imageFlags.force, "force", "f", false, "remove even while containers use the image")
	imageCmd.AddCommand(imageImportCmd, imageLsCmd, imageInspectCmd, imageExportCmd, imageRmCmd, imageMountCmd, imageUmountCmd)
	rootCmd.AddCommand(imageCmd)
}

// runImageImport imports PATH (or stdin) and prints the images' ids and names.
func runImageImport(cmd *cobra.Command, args []string) error {
	if args[0] == "-" && term.IsTerminal(int(os.Stdin.Fd())) {
		return usagef("image import -: stdin is a terminal; pipe a docker-save archive into it")
	}
	return withStore(func(s *graph.Store) error {
		bar := newProgressBar("importing")
		opts := graph.ImportOptions{Name: imageFlags.name, Progress: bar.update}
		var imgs []graph.Image
		var err error
		if args[0] == "-" {
			imgs, err = s.ImportDockerArchive(cmd.Context(), os.Stdin, opts)
		} else {
			imgs, err = s.Import(cmd.Context(), args[0], opts)
		}
		bar.finish()
		if err != nil {
			return err
		}
		for _, img := range imgs {
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", img.ID, strings.Join(img.Names, " "))
		}
		return nil
	})
}

// imageSummary is one image of `image ls --json`.
type imageSummary struct {
	ID       digest.Digest   `json:"id"`
	Names    []string        `json:"names"`
	Layers   int             `json:"layers"`
	Size     int64           `json:"size"`
	Created  time.Time       `json:"created"`
	ChainIDs []digest.Digest `json:"chainIDs"`
}

// runImageLs lists the images.
func runImageLs(cmd *cobra.Command, args []string) error {
	return withStore(func(s *graph.Store) error {
		imgs, err := s.Images(cmd.Context())
		if err != nil {
			return err
		}
		out := make([]imageSummary, 0, len(imgs))
		for _, img := range imgs {
			layers, err := s.ImageLayers(cmd.Context(), string(img.ID))
			if err != nil {
				return err
			}
			sum := imageSummary{ID: img.ID, Names: img.Names, Layers: len(layers), Created: img.Created, ChainIDs: img.ChainIDs}
			if sum.Names == nil {
				sum.Names = []string{}
			}
			for _, l := range layers {
				sum.Size += l.Size
			}
			out = append(out, sum)
		}
		if imageFlags.json {
			return printJSON(cmd.OutOrStdout(), out)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tIMAGE ID\tLAYERS\tSIZE\tCREATED")
		for _, sum := range out {
			names := sum.Names
			if len(names) == 0 {
				names = []string{"<none>"}
			}
			for _, n := range names {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", n, shortID(sum.ID), sum.Layers, humanBytes(sum.Size), sum.Created.Local().Format(time.DateTime))
			}
		}
		return w.Flush()
	})
}

// imageDetail is the output of `image inspect --json`.
type imageDetail struct {
	ID           digest.Digest `json:"id"`
	Names        []string      `json:"names"`
	Created      time.Time     `json:"created"`
	Architecture string        `json:"architecture,omitempty"`
	OS           string        `json:"os,omitempty"`
	Config       runConfig     `json:"config"`
	Layers       []layerInfo   `json:"layers"`
}

// runConfig is the run-time part of an image config.
type runConfig struct {
	Entrypoint []string          `json:"entrypoint"`
	Cmd        []string          `json:"cmd"`
	Env        []string          `json:"env"`
	WorkingDir string            `json:"workingDir"`
	User       string            `json:"user"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// layerInfo is one layer in `image inspect` and `layer ls` output.
type layerInfo struct {
	ChainID          digest.Digest `json:"chainID"`
	DiffID           digest.Digest `json:"diffID"`
	Parent           digest.Digest `json:"parent,omitempty"`
	Size             int64         `json:"size"`
	Depth            int           `json:"depth"`
	RefCount         int           `json:"refCount"`
	CompressedDigest digest.Digest `json:"compressedDigest,omitempty"`
	MediaType        string        `json:"mediaType,omitempty"`
}

func layerInfoOf(l graph.Layer) layerInfo {
	return layerInfo{ChainID: l.ChainID, DiffID: l.DiffID, Parent: l.Parent, Size: l.Size, Depth: l.Depth,
		RefCount: l.RefCount, CompressedDigest: l.CompressedDigest, MediaType: l.MediaType}
}

// runImageInspect shows one image.
func runImageInspect(cmd *cobra.Command, args []string) error {
	return withStore(func(s *graph.Store) error {
		img, err := s.Image(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		cfg, err := img.OCIConfig()
		if err != nil {
			return err
		}
		layers, err := s.ImageLayers(cmd.Context(), string(img.ID))
		if err != nil {
			return err
		}
		d := imageDetail{ID: img.ID, Names: img.Names, Created: img.Created, Architecture: cfg.Architecture, OS: cfg.OS,
			Config: runConfig{Entrypoint: cfg.Config.Entrypoint, Cmd: cfg.Config.Cmd, Env: cfg.Config.Env,
				WorkingDir: cfg.Config.WorkingDir, User: cfg.Config.User, Labels: cfg.Config.Labels},
			Layers: []layerInfo{}}
		if d.Names == nil {
			d.Names = []string{}
		}
		for _, l := range layers {
			d.Layers = append(d.Layers, layerInfoOf(l))
		}
		if imageFlags.json {
			return printJSON(cmd.OutOrStdout(), d)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "ID:\t%s\n", d.ID)
		fmt.Fprintf(w, "Names:\t%s\n", strings.Join(d.Names, ", "))
		fmt.Fprintf(w, "Platform:\t%s/%s\n", d.OS, d.Architecture)
		fmt.Fprintf(w, "Entrypoint:\t%s\n", quoteList(d.Config.Entrypoint))
		fmt.Fprintf(w, "Cmd:\t%s\n", quoteList(d.Config.Cmd))
		fmt.Fprintf(w, "Env:\t%s\n", strings.Join(d.Config.Env, "\n\t"))
		fmt.Fprintf(w, "WorkingDir:\t%s\n", d.Config.WorkingDir)
		fmt.Fprintf(w, "User:\t%s\n", d.Config.User)
		w.Flush()
		fmt.Fprintln(cmd.OutOrStdout(), "Layers:")
		w = tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  #\tDIFF ID\tCHAIN ID\tSIZE")
		for i, l := range d.Layers {
			fmt.Fprintf(w, "  %d\t%s\t%s\t%s\n", i, l.DiffID, l.ChainID, humanBytes(l.Size))
		}
		return w.Flush()
	})
}

// runImageExport writes an image as an OCI layout or a docker-save tar.
func runImageExport(cmd *cobra.Command, args []string) error {
	switch imageFlags.format {
	case "oci", "docker":
	default:
		return usagef("image export: --format %q (want oci or docker)", imageFlags.format)
	}
	switch imageFlags.compression {
	case "gzip", "zstd", "none":
	default:
		return usagef("image export: --compression %q (want gzip, zstd or none)", imageFlags.compression)
	}
	return withStore(func(s *graph.Store) error {
		bar := newProgressBar("exporting")
		defer bar.finish()
		opts := graph.ExportOptions{Compression: imageFlags.compression, Progress: bar.update}
		if imageFlags.format == "oci" {
			return s.Export(cmd.Context(), args[0], args[1], opts)
		}
		return exportDockerArchive(cmd, s, args[0], args[1], opts)
	})
}

// exportDockerArchive writes a docker-save tar to path (- for stdout),
// through a temporary file renamed into place so no half-written archive
// is left.
func exportDockerArchive(cmd *cobra.Command, s *graph.Store, ref, path string, opts graph.ExportOptions) error {
	if path == "-" {
		return s.ExportDockerArchive(cmd.Context(), ref, cmd.OutOrStdout(), opts)
	}
	if _, err := s.Image(cmd.Context(), ref); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dirOf(path), ".export-*.tar")
	if err != nil {
		return fmt.Errorf("image export %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	err = s.ExportDockerArchive(cmd.Context(), ref, tmp, opts)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("image export %s: %w", path, err)
	}
	return nil
}

// dirOf is the directory of path ("." for a bare name).
func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		if i == 0 {
			return "/"
		}
		return path[:i]
	}
	return "."
}

// runImageRm removes an image and prints what went.
func runImageRm(cmd *cobra.Command, args []string) error {
	return withStore(func(s *graph.Store) error {
		img, err := s.Image(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		removed, err := s.RemoveImage(cmd.Context(), args[0], imageFlags.force)
		if err != nil {
			return err
		}
		if _, err := s.Image(cmd.Context(), string(img.ID)); err == nil {
			fmt.Fprintf(cmd.OutOrStdout(), "untagged %s\n", args[0])
			return nil
		}
		fmt.Fprintf(cmd.OutOrStdout(), "removed image %s\n", img.ID)
		for _, l := range removed {
			fmt.Fprintf(cmd.OutOrStdout(), "removed layer %s\n", l)
		}
		return nil
	})
}

// runGroup is the RunE of a command that only groups subcommands: an
// unknown subcommand is a usage error, none shows the help.
func runGroup(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return cmd.Help()
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// shortID is the first 12 hex digits of an id.
func shortID(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		return e[:12]
	}
	return e
}

// quoteList renders a command line as a JSON array ("[]" for none).
func quoteList(l []string) string {
	if l == nil {
		l = []string{}
	}
	data, _ := json.Marshal(l)
	return string(data)
}
