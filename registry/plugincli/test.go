package plugincli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/spf13/cobra"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/conformance"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/manifest"
)

// TestCommand returns `wapper plugin test FILE.wasm`: the plugin-neutral
// checks of conformance.RunNeutral on any plugin, with the author's own
// device when --device is given.
func TestCommand() *cobra.Command {
	var (
		opts    conformance.NeutralOptions
		devFile string
		config  string
		grants  []string
		showLog bool
	)
	c := &cobra.Command{
		Use:   "test FILE.wasm [--device dev.yaml] [--cycles N]",
		Short: "Check that your plugin loads, fails cleanly, does not leak and reads your device",
		Long: "test runs checks that hold for any plugin, whatever its protocol, in the host runtime:\n\n  " +
			strings.Join(conformance.NeutralChecks(), "\n  ") + "\n\n" +
			"--device takes a KubeEdge Device and its DeviceModel (devices.kubeedge.io/v1beta1) in one\n" +
			"YAML file, optionally with the plugin's MapperPlugin (mappers.wapper.dev/v1alpha1), whose\n" +
			"config, grants and limits then apply; --grant adds grants as `wapper plugin run` takes\n" +
			"them. Without --device the checks use a device with no properties, which a plugin may\n" +
			"refuse: then only its error paths are checked. The timeout check needs --slow, a\n" +
			"property of the device whose read outlasts --call-timeout.\n\n" +
			"It prints one line per check (PASS, FAIL or SKIP, with what it saw) and exits non-zero\n" +
			"when any check fails. To run the ABI conformance suite on a conformance plugin built\n" +
			"with your own SDK, use `wapper plugin conformance`.",
		Example: "  wapper plugin test thermo.wasm\n" +
			"  wapper plugin test bin/plugins/virtual.wasm --device examples/standalone/thermostat.yaml\n" +
			"  wapper plugin test modbus.wasm --device plc.yaml --grant tcp://192.0.2.10:502 --cycles 50",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if devFile != "" {
				if err := fromYAML(out, devFile, args[0], grants, &opts); err != nil {
					return err
				}
			} else if len(grants) > 0 {
				return fmt.Errorf("--grant needs --device")
			}
			if config != "" {
				if !json.Valid([]byte(config)) || !strings.HasPrefix(strings.TrimSpace(config), "{") {
					return fmt.Errorf("--config %q is not a JSON object", config)
				}
				opts.Config = json.RawMessage(config)
			}
			if opts.Slow != "" && (opts.Device == nil || !slices.ContainsFunc(opts.Device.Properties, func(p abi.Property) bool { return p.Name == opts.Slow })) {
				return fmt.Errorf("--slow %q names no property of the --device", opts.Slow)
			}
			if showLog {
				opts.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			fmt.Fprintf(out, "plugin checks on %s\n", args[0])
			rep := conformance.RunNeutral(cmd.Context(), wasm, opts)
			rep.WriteText(out)
			if !rep.Passed() {
				return fmt.Errorf("%d of %d checks failed (rerun with --log to see the plugin's log)", len(rep.Failed()), len(rep.Results))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&devFile, "device", "", "YAML with a KubeEdge Device and its DeviceModel (and optionally the MapperPlugin) to add and read")
	f.StringArrayVar(&grants, "grant", nil, "grant for the device's I/O in MapperPlugin spec.grants syntax, such as tcp://HOST:PORT (repeatable)")
	f.StringVar(&config, "config", "", "plugin config for wapper_init, a JSON object (default: the MapperPlugin's spec.config, or {})")
	f.StringVar(&opts.Slow, "slow", "", "a property of --device whose read outlasts --call-timeout, for the timeout check")
	f.IntVar(&opts.Cycles, "cycles", 0, "measured add/read/remove cycles of the leak check, after 60 warm-up cycles (default 200)")
	f.IntVar(&opts.MemoryMiB, "memory-mib", 0, "the plugin's memory limit in MiB (default 64, or the MapperPlugin's)")
	f.DurationVar(&opts.CallTimeout, "call-timeout", 0, "deadline of each call (default 5s, or the MapperPlugin's)")
	f.BoolVar(&showLog, "log", false, "print the runtime's and the plugin's log to stderr")
	return c
}

// fromYAML sets the device, and the config, grants and limits of a
// MapperPlugin, from the --device file, parsed and validated as
// wapper-host's --manifests folder is.
func fromYAML(out io.Writer, file, wasmFile string, grants []string, opts *conformance.NeutralOptions) error {
	set, err := runLoadDevices(file)
	if err != nil {
		return err
	}
	if len(set.Devices) > 1 {
		return fmt.Errorf("%s has %d Devices; plugin test adds one, so keep one", file, len(set.Devices))
	}
	d, err := describe(set, set.Devices[0])
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	opts.Device = &d
	mp, err := runPluginFor(wasmFile, set, grants)
	if err != nil {
		return err
	}
	if !slices.Contains(mp.Spec.Protocols, d.Protocol) {
		fmt.Fprintf(out, "note: MapperPlugin %s does not list protocol %q in spec.protocols; wapper-host would not give it this device\n", mp.Name, d.Protocol)
	}
	opts.Grants = mp.Spec.Grants
	if mp.Spec.Config != nil && len(mp.Spec.Config.Raw) > 0 {
		opts.Config = mp.Spec.Config.Raw
	}
	if len(set.Plugins) > 0 {
		if opts.MemoryMiB == 0 {
			opts.MemoryMiB = int(mp.Spec.Limits.MemoryMiB)
		}
		if opts.CallTimeout == 0 {
			opts.CallTimeout = mp.Spec.Limits.CallTimeout.Duration
		}
	}
	return nil
}

// describe builds the description wapper-host gives a plugin for a Device
// (SPEC.md §8), as host/devices does: the protocol from the model, the
// device's protocol configData, the model's protocolConfigData, and each
// property's type and access mode from the model with the model's and
// the device's visitor configData merged.
func describe(set *manifest.Set, dv *v1beta1.Device) (abi.Device, error) {
	var model *v1beta1.DeviceModel
	for _, m := range set.Models {
		if m.Name == dv.Spec.DeviceModelRef.Name && m.Namespace == dv.Namespace {
			model = m
		}
	}
	if model == nil {
		return abi.Device{}, fmt.Errorf("Device %s: DeviceModel %q (spec.deviceModelRef.name) is not in the file", dv.Name, dv.Spec.DeviceModelRef.Name)
	}
	d := abi.Device{ID: 1, Namespace: dv.Namespace, Name: dv.Name, Model: model.Name, Protocol: model.Spec.Protocol, Properties: []abi.Property{}}
	if c := dv.Spec.Protocol.ConfigData; c != nil && c.Data != nil {
		d.ProtocolConfig, _ = json.Marshal(c.Data)
	}
	if c := model.Spec.ProtocolConfigData; c != nil && c.Data != nil {
		d.ModelConfig, _ = json.Marshal(c.Data)
	}
	dprops := dv.Spec.Properties
	if len(dprops) == 0 {
		for _, mp := range model.Spec.Properties {
			dprops = append(dprops, v1beta1.DeviceProperty{Name: mp.Name})
		}
	}
	for i, dp := range dprops {
		j := slices.IndexFunc(model.Spec.Properties, func(mp v1beta1.ModelProperty) bool { return mp.Name == dp.Name })
		if j < 0 {
			return d, fmt.Errorf("Device %s: property %q is not in DeviceModel %s", dv.Name, dp.Name, model.Name)
		}
		p, _, err := devices.DescribeProperty(dp, &model.Spec.Properties[j], uint32(i))
		if err != nil {
			return d, fmt.Errorf("DeviceModel %s: %w", model.Name, err)
		}
		d.Properties = append(d.Properties, p)
	}
	return d, nil
}
