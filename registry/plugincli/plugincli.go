// Package plugincli holds the plugin author's commands of the wapper CLI
// under `wapper plugin`: new (a plugin project), run (a module and its
// devices under the host's runtime), inspect (the loader's verdict on a
// module, with hints), test (plugin-neutral checks of any plugin) and
// conformance (the ABI conformance suite, on a conformance plugin).
package plugincli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/conformance"
	"wapper.dev/wapper/host/runtime"
)

// Command returns `wapper plugin` with inspect and conformance; extra adds
// more (such as `plugin test`).
func Command(extra ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   "plugin",
		Short: "Start, run and check mapper plugins before publishing them",
	}
	c.AddCommand(InspectCommand(), ConformanceCommand())
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
			"under the default limits with wapper_init({}). It names the grants the module's device\n" +
			"I/O needs, and gives a hint for common mistakes: a Go module built without\n" +
			"-buildmode=c-shared, a module that registers no driver. It exits non-zero and names\n" +
			"every problem when the host would refuse the module or every call would fail.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			info, err, initErr := inspect(cmd.Context(), wasm)
			report(cmd.OutOrStdout(), args[0], info, err, initErr)
			switch {
			case err != nil:
				return errors.New("the host would refuse this module")
			case initErr != nil && len(conformance.Hints(info, initErr)) > 0:
				return errors.New("the module loads, but every call would fail")
			case initErr != nil && strings.Contains(initErr.Error(), "instance thrown away"):
				return errors.New("wapper_init traps")
			}
			return nil
		},
	}
}

// inspect runs the loader's checks, then loads the module with one
// instance under the default limits, which calls wapper_init({}). err is
// the loader's refusal (the checks, compilation, instantiation,
// _initialize or the marker); initErr a failing wapper_init, which a
// plugin that needs a config may rightly return.
func inspect(ctx context.Context, wasm []byte) (info *runtime.ModuleInfo, err, initErr error) {
	if info, err = runtime.Check(ctx, wasm); err != nil {
		return info, err, nil
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return info, err, nil
	}
	defer eng.Close(context.Background())
	p, err := eng.Load(ctx, runtime.Config{Name: "inspect", Wasm: wasm, Instances: 1})
	var ae *abi.Error
	switch {
	case errors.As(err, &ae):
		return info, nil, err
	case err != nil:
		info.Problems = append(info.Problems, err.Error())
		return info, err, nil
	}
	defer p.Close(context.Background())
	return p.Info(), nil, nil
}

// Print writes a human-readable report of a module check (runtime.Verify
// or runtime.Check), with hints for common mistakes.
func Print(w io.Writer, name string, info *runtime.ModuleInfo, err error) {
	report(w, name, info, err, nil)
}

// report is Print with the outcome of wapper_init({}).
func report(w io.Writer, name string, info *runtime.ModuleInfo, err, initErr error) {
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
	if info.ABIMajor != 0 {
		g := conformance.Grants(info)
		if len(g) == 0 {
			g = []string{"no grants (no device I/O imports)"}
		}
		fmt.Fprintf(w, "needs:    %s\n", strings.Join(g, "\n          "))
		fmt.Fprintln(w, "protocol: none declared (ABI 1 has no export for it); name the protocols the plugin serves\n"+
			"          with `wapper push --protocol NAME` and in its MapperPlugin's spec.protocols")
	}
	hints := conformance.Hints(info, errors.Join(err, initErr))
	switch {
	case err == nil && initErr == nil:
		fmt.Fprintln(w, "verdict:  loads")
	case err == nil && len(hints) > 0:
		fmt.Fprintln(w, "verdict:  loads, but every call fails")
		fmt.Fprintf(w, "  - wapper_init({}): %v\n", initErr)
	case err == nil:
		fmt.Fprintf(w, "verdict:  loads, but wapper_init({}) failed: %v\n", initErr)
		fmt.Fprintln(w, "  (fine if the plugin needs a config: give it in the MapperPlugin's spec.config)")
	default:
		fmt.Fprintln(w, "verdict:  REFUSED")
		var refused *runtime.RefusedError
		if errors.As(err, &refused) {
			for _, p := range refused.Problems {
				fmt.Fprintf(w, "  - %s\n", p)
			}
		} else {
			fmt.Fprintf(w, "  - %v\n", err)
		}
	}
	for _, h := range hints {
		fmt.Fprintf(w, "hint:     %s\n", h)
	}
}

func list(w io.Writer, title string, items []string) {
	fmt.Fprintf(w, "%s (%d):\n", title, len(items))
	for _, it := range items {
		fmt.Fprintf(w, "  %s\n", it)
	}
}
