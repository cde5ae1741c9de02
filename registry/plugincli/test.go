package plugincli

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/host/conformance"
)

// TestCommand returns `wapper plugin test FILE.wasm`: the ABI conformance
// suite of package host/conformance run on a module built from
// abi/CONFORMANCE.md with any SDK.
func TestCommand() *cobra.Command {
	var (
		only        []string
		cycles      int
		memoryMiB   int
		callTimeout time.Duration
		showLog     bool
	)
	c := &cobra.Command{
		Use:   "test FILE.wasm",
		Short: "Run the ABI conformance suite on a conformance plugin built with your SDK",
		Long: "test loads FILE.wasm in the host runtime and runs the ABI conformance suite on it:\n" +
			"required exports, alloc/free discipline, error codes and messages, value round trips\n" +
			"for every property type, batch read, poll and report, state, methods, kv, and\n" +
			"re-instantiation after a panic or a deadline. FILE.wasm must implement the\n" +
			"conformance plugin of abi/CONFORMANCE.md (bin/testplugins/conformance.wasm from\n" +
			"sdk-go, bin/testplugins/conformance-rust.wasm from sdk-rust are references).\n" +
			"It prints one line per case and exits non-zero when any case fails.",
		Example: "  wapper plugin test bin/testplugins/conformance-rust.wasm\n" +
			"  wapper plugin test --run values,errors my-sdk-conformance.wasm",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			opts := conformance.Options{Only: only, Cycles: cycles, MemoryMiB: memoryMiB, CallTimeout: callTimeout}
			if showLog {
				opts.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "conformance suite (abi/CONFORMANCE.md) on %s\n", args[0])
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
	return c
}

func caseNames() string {
	s := ""
	for i, c := range conformance.Cases() {
		if i > 0 {
			s += ", "
		}
		s += c.Name
	}
	return s
}
