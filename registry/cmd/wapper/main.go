// Command wapper is the plugin author's and operator's tool: it starts
// plugin projects (plugin new), runs and checks plugin modules (plugin run,
// inspect, test, conformance), publishes and fetches them (push, pull,
// inspect, tag, ls) and runs the embedded registry (registry serve).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/registry/cli"
	"wapper.dev/wapper/registry/plugincli"
)

func main() {
	root := &cobra.Command{
		Use:           "wapper",
		Short:         "Publish, fetch and serve wapper mapper plugins",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(cli.Commands()...)
	root.AddCommand(plugincli.Command(plugincli.TestCommand(), plugincli.NewCommand(), plugincli.RunCommand()))
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "wapper:", err)
		os.Exit(1)
	}
}
