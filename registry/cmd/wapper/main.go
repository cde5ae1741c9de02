// Command wapper is the plugin author's and operator's tool: it starts
// plugin projects (plugin new), runs and checks plugin modules (plugin run,
// inspect, test, conformance), publishes and fetches them (push, pull,
// inspect, tag, ls) and runs the embedded registry (registry serve).
//
// The command line follows internal/cli's conventions: --help exits 0 on
// every command, a bad flag or an unknown command exits 2, and
// --log-level and --log-format (on every command) set the log of the
// long-running ones, such as registry serve.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/internal/cli"
	regcli "wapper.dev/wapper/registry/cli"
	"wapper.dev/wapper/registry/plugincli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, newRoot(), os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// newRoot returns wapper's command tree.
func newRoot() *cobra.Command {
	var log cli.Log
	root := &cobra.Command{
		Use:   "wapper",
		Short: "Publish, fetch and serve wapper mapper plugins",
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			slog.SetDefault(log.Logger(cmd.ErrOrStderr()))
		},
	}
	cli.AddLogFlags(root.PersistentFlags(), &log)
	root.AddCommand(regcli.Commands()...)
	root.AddCommand(plugincli.Command(plugincli.TestCommand(), plugincli.NewCommand(), plugincli.RunCommand()))
	return root
}
