// Command wapper is the plugin author's and operator's tool: it publishes
// and fetches mapper plugins (push, pull, inspect, tag, ls) and runs the
// embedded registry (registry serve).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/registry/cli"
)

func main() {
	root := &cobra.Command{
		Use:           "wapper",
		Short:         "Publish, fetch and serve wapper mapper plugins",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(cli.Commands()...)
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "wapper:", err)
		os.Exit(1)
	}
}
