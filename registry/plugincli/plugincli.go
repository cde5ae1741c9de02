// Package plugincli holds the plugin author's commands of the wapper CLI
// under `wapper plugin`: inspect (the loader's verdict on a module) and
// test (the ABI conformance suite).
package plugincli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
)

// Command returns `wapper plugin` with its subcommands; extra adds more
// (such as `plugin test`).
func Command(extra ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   "plugin",
		Short: "Check mapper plugin modules before publishing them",
	}
	c.AddCommand(InspectCommand())
	c.AddCommand(extra...)
	return c
}

// InspectCommand returns `wapper plugin inspect FILE.wasm`.
func InspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE.wasm",
		Short: "Show a module's ABI version, exports and imports, and whether wapper-host would load it",
		Long: "inspect runs the host's loader on a module: the ABI marker, the required exports and\n" +
			"their signatures, the imports the host provides, compilation, and one instantiation\n" +
			"under the default limits. It exits non-zero and names every problem when the host\n" +
			"would refuse the module.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			info, err := runtime.Verify(cmd.Context(), wasm)
			Print(cmd.OutOrStdout(), args[0], info, err)
			if err != nil {
				return errors.New("the host would refuse this module")
			}
			return nil
		},
	}
}

// Print writes a human-readable report of a module check.
func Print(w io.Writer, name string, info *runtime.ModuleInfo, err error) {
	fmt.Fprintf(w, "module:   %s (%d bytes)\n", name, info.Size)
	switch {
	case info.ABIMajor == 0:
		fmt.Fprintln(w, "abi:      none")
	case info.ABIMinor < 0:
		fmt.Fprintf(w, "abi:      %d (minor unknown: not instantiated)\n", info.ABIMajor)
	default:
		fmt.Fprintf(w, "abi:      %d.%d (host speaks %d.%d)\n", info.ABIMajor, info.ABIMinor, abi.Major, abi.Minor)
	}
	if info.MemoryMinPages > 0 {
		fmt.Fprintf(w, "memory:   %d pages (%d KiB) initial\n", info.MemoryMinPages, info.MemoryMinPages*64)
	}
	if len(info.Optional) > 0 {
		fmt.Fprintf(w, "optional: %s\n", strings.Join(info.Optional, ", "))
	}
	list(w, "exports", info.Exports)
	list(w, "imports", info.Imports)
	if err == nil {
		fmt.Fprintln(w, "verdict:  loads")
		return
	}
	fmt.Fprintln(w, "verdict:  REFUSED")
	var refused *runtime.RefusedError
	if errors.As(err, &refused) {
		for _, p := range refused.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
		return
	}
	fmt.Fprintf(w, "  - %v\n", err)
}

func list(w io.Writer, title string, items []string) {
	fmt.Fprintf(w, "%s (%d):\n", title, len(items))
	for _, it := range items {
		fmt.Fprintf(w, "  %s\n", it)
	}
}
