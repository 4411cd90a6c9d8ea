package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/unionstack/unionstack/unionfs"
)

// serveSocket is the --socket flag of `unionctl serve`.
var serveSocket string

var serveCmd = &cobra.Command{
	Use:   "serve [--socket PATH]",
	Short: "serve the fuse driver's mounts from one long-running process",
	Long: `Serve unionfs mounts handed over by clients, until SIGTERM or SIGINT.

A client (the fuse driver's mounts through graph.MountAll: unionctl image
mount, container mount, the runner, the plugins) validates the spec, mounts
/dev/fuse itself in its own mount namespace and passes the FUSE connection
over the socket; this server then serves it. That costs a few socket
messages per mount instead of starting a daemon process, which makes the
fuse driver's prepare+mount several times faster. Without a server, mounts
start a daemon each, as before.

Each mount ends when it is unmounted. On SIGTERM the server detaches the
mounts it serves that are visible in its mount namespace, and exits; mounts
in other namespaces die with it and unmount like any dead FUSE mount.
Branch directories are opened in the server's mount namespace. The socket
is root-only (mode 0600). Clients find it at $` + unionfs.ServeSocketEnv + ` or
the default below.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		return unionfs.RunMountServer(serveSocket, cmd.ErrOrStderr(), func() {
			fmt.Fprintf(cmd.OutOrStdout(), "serving unionfs mounts on %s\n", serveSocket)
		})
	},
}

func init() {
	serveCmd.Flags().StringVar(&serveSocket, "socket", unionfs.ServeSocket(), "unix socket to listen on")
	rootCmd.AddCommand(serveCmd)
}
