package plugincli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/registry/plugincli/scaffold"
)

// NewCommand returns `wapper plugin new go|rust NAME`: a plugin project
// that builds and tests offline, outside the wapper repository.
func NewCommand() *cobra.Command {
	var opts scaffold.Options
	c := &cobra.Command{
		Use:   "new go|rust NAME",
		Short: "Write a new plugin project: a driver, native tests, a Makefile, sample YAML and the SDK",
		Long: "new writes a plugin project into NAME (or --dir): a driver for a line-based TCP\n" +
			"instrument (connect to configData ip:port, send a command, read a line, parse a\n" +
			"number), native tests against a simulated instrument, a Makefile (make test, make\n" +
			"build), and manifests/ with a MapperPlugin that grants the instrument's address and\n" +
			"a KubeEdge DeviceModel and Device.\n\n" +
			"The SDK comes with it: no registry serves wapper.dev/wapper/sdk-go or the sdk-rust\n" +
			"crate, so this binary carries their sources and writes them into NAME/" + scaffold.SDKDir + "\n" +
			"(sdk-go and abi, used through replace lines in go.mod; or sdk-rust, a path\n" +
			"dependency in Cargo.toml). The project needs no network to build or test.\n" +
			"--sdk-only rewrites just that folder, to move an existing project to this SDK.",
		Example: "  wapper plugin new go thermo\n" +
			"  wapper plugin new rust scope --protocol scpi --dir ~/src/scope\n" +
			"  cd thermo && make test build && wapper plugin inspect thermo.wasm",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Lang, opts.Name = scaffold.Lang(args[0]), args[1]
			files, err := scaffold.Generate(opts)
			if err != nil {
				return err
			}
			dir := opts.Dir
			if dir == "" {
				dir = opts.Name
			}
			out := cmd.OutOrStdout()
			if opts.SDKOnly {
				fmt.Fprintf(out, "wrote the %s SDK into %s (%d files)\n", args[0], filepath.Join(dir, scaffold.SDKDir), len(files))
				return nil
			}
			sdk := 0
			for _, f := range files {
				if !strings.HasPrefix(f, scaffold.SDKDir+"/") {
					fmt.Fprintf(out, "  %s\n", f)
				} else {
					sdk++
				}
			}
			if sdk > 0 {
				fmt.Fprintf(out, "  %s/ (the SDK, %d files)\n", scaffold.SDKDir, sdk)
			}
			fmt.Fprintf(out, "wrote %s plugin %q into %s; next:\n  cd %s && make test build\n", args[0], opts.Name, dir, dir)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&opts.Protocol, "protocol", "", "protocol the plugin provides (DeviceModel spec.protocol; default NAME)")
	f.StringVar(&opts.Dir, "dir", "", "project folder, which must not exist or be empty (default NAME)")
	f.StringVar(&opts.Addr, "addr", scaffold.DefaultAddr, "the instrument's HOST:PORT in the sample YAML and the MapperPlugin's grants")
	f.BoolVar(&opts.SDKOnly, "sdk-only", false, "rewrite only DIR/"+scaffold.SDKDir+", to update an existing project's SDK")
	f.StringVar(&opts.Repo, "sdk", "", "use the SDK of this wapper checkout in place (replace/path to it) instead of a copy")
	return c
}
