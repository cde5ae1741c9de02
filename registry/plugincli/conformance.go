package plugincli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/host/conformance"
)

// ConformanceCommand returns `wapper plugin conformance FILE.wasm`: the ABI
// conformance suite of package host/conformance, run on a build of the
// conformance plugin of abi/CONFORMANCE.md (for SDK authors). A module that
// is not one is told apart first and sent to `wapper plugin test`.
func ConformanceCommand() *cobra.Command {
	var (
		only        []string
		cycles      int
		memoryMiB   int
		callTimeout time.Duration
		showLog     bool
		force       bool
	)
	c := &cobra.Command{
		Use:   "conformance FILE.wasm",
		Short: "Run the ABI conformance suite on a conformance plugin built with your SDK",
		Long: "conformance loads FILE.wasm in the host runtime and runs the ABI conformance suite on it:\n" +
			"required exports, alloc/free discipline, error codes and messages, value round trips\n" +
			"for every property type, batch read, poll and report, state, methods, kv, and\n" +
			"re-instantiation after a panic or a deadline. FILE.wasm must implement the\n" +
			"conformance plugin of abi/CONFORMANCE.md (bin/testplugins/conformance.wasm from\n" +
			"sdk-go, bin/testplugins/conformance-rust.wasm from sdk-rust are references); it is\n" +
			"for SDK authors. It first checks that FILE.wasm answers as one (--force skips that),\n" +
			"and sends any other plugin to `wapper plugin test`. It prints one line per case and\n" +
			"exits non-zero when any case fails.",
		Example: "  wapper plugin conformance bin/testplugins/conformance-rust.wasm\n" +
			"  wapper plugin conformance --run values,errors my-sdk-conformance.wasm",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			wasm, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			opts := conformance.Options{Only: only, Cycles: cycles, MemoryMiB: memoryMiB, CallTimeout: callTimeout}
			if showLog {
				opts.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			out := cmd.OutOrStdout()
			if !force {
				switch err := conformance.Detect(cmd.Context(), wasm); {
				case errors.Is(err, conformance.ErrNotConformance):
					fmt.Fprintf(out, "%s is not a conformance plugin (abi/CONFORMANCE.md); to test your own plugin use `wapper plugin test %s`\n", file, file)
					fmt.Fprintf(out, "  (%s)\n", strings.TrimPrefix(err.Error(), conformance.ErrNotConformance.Error()+": "))
					return fmt.Errorf("%s is not a conformance plugin", file)
				case err != nil:
					fmt.Fprintf(out, "the host cannot load %s:\n  %v\n", file, err)
					return fmt.Errorf("%s does not load; `wapper plugin inspect %s` says why", file, file)
				}
			}
			fmt.Fprintf(out, "conformance suite (abi/CONFORMANCE.md) on %s\n", file)
			rep := conformance.Run(cmd.Context(), wasm, opts)
			rep.WriteText(out)
			switch {
			case len(rep.Results) == 0:
				return fmt.Errorf("no case matches --run %v; cases: %s", only, caseNames())
			case !rep.Passed():
				return fmt.Errorf("%d of %d conformance cases failed (rerun with --log to see the plugin's log)", len(rep.Failed()), len(rep.Results))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&only, "run", nil, "run only these cases or groups (comma-separated, such as values,restart/panic)")
	f.IntVar(&cycles, "cycles", 0, "add/write/remove cycles of the memory cases (default 200)")
	f.IntVar(&memoryMiB, "memory-mib", 0, "the plugin's memory limit in MiB (default 64)")
	f.DurationVar(&callTimeout, "call-timeout", 0, "deadline of each ordinary call (default 10s)")
	f.BoolVar(&showLog, "log", false, "print the runtime's and the plugin's log to stderr")
	f.BoolVar(&force, "force", false, "run the suite even when the module does not answer as a conformance plugin")
	return c
}

func caseNames() string {
	names := make([]string, 0, len(conformance.Cases()))
	for _, c := range conformance.Cases() {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}
