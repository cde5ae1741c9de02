package plugincli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
)

// runOptions are the flags of `wapper plugin run`.
type runOptions struct {
	device     string
	grants     []string
	reads      []string
	writes     []string
	watch      bool
	duration   time.Duration
	logLevel   string
	cache      string
	secretsDir string
}

// RunCommand returns `wapper plugin run FILE.wasm --device dev.yaml`: the
// module under wapper-host's own runtime and device manager (same loader
// checks, sandbox limits, grants, cycles, twins and desired-write path),
// with its state in a temporary folder removed at exit, and no broker,
// REST or DMI.
func RunCommand() *cobra.Command {
	var o runOptions
	c := &cobra.Command{
		Use:   "run FILE.wasm --device dev.yaml",
		Short: "Run a plugin on the devices of a YAML file, as wapper-host would, and show what they read",
		Long: "run loads FILE.wasm with wapper-host's runtime and device manager (the same loader\n" +
			"checks, memory and call limits, grants, collect cycles, twins and desired-value\n" +
			"writes) and adds the devices of --device: a KubeEdge Device and DeviceModel YAML\n" +
			"(devices.kubeedge.io/v1beta1), optionally with one MapperPlugin\n" +
			"(mappers.wapper.dev/v1alpha1) whose limits, config and grants apply; its module is\n" +
			"ignored, FILE.wasm runs instead. Without a MapperPlugin the plugin is named after\n" +
			"FILE, serves the models' protocols, has the default limits and only the grants of\n" +
			"--grant. State lives in a temporary folder removed at exit; nothing is published.\n" +
			"\n" +
			"--grant adds one entry in MapperPlugin spec.grants syntax: tcp://HOST:PORT,\n" +
			"udp://HOST:PORT or tls://HOST:PORT (network), an absolute path glob such as\n" +
			"/dev/ttyUSB* (serial), gpio:LINE (GPIO), listen:udp://IP:PORT (what a datagram\n" +
			"socket may bind) or secret:NAME (a secret under --secrets-dir, laid out as wapper-host's:\n" +
			"DIR/NAME/KEY); network:, serial: and gpio: prefixes are accepted for all.\n" +
			"\n" +
			"With --read or --write it reads (or writes through the desired-value path, then\n" +
			"reads back) once and prints \"device property value\" lines. Otherwise it prints\n" +
			"readings, read errors and state changes as they come, for --for or until Ctrl-C;\n" +
			"--watch shows a table redrawn in place instead when stdout is a terminal.\n" +
			"The host's and the plugin's log goes to stderr. It exits non-zero when the module\n" +
			"or a device is refused, or a --read or --write fails.",
		Example: "  wapper plugin run bin/plugins/virtual.wasm --device examples/standalone/thermostat.yaml --watch\n" +
			"  wapper plugin run modbus.wasm --device plc.yaml --grant tcp://192.0.2.10:502 --read temperature\n" +
			"  wapper plugin run modbus.wasm --device plc.yaml --grant tcp://192.0.2.10:502 --write plc-1/setpoint=42",
		Args:         cobra.ExactArgs(1),
		SilenceUsage: true,
		RunE:         func(cmd *cobra.Command, args []string) error { return o.run(cmd, args[0]) },
	}
	f := c.Flags()
	f.StringVar(&o.device, "device", "", "YAML file of Device, DeviceModel and optionally MapperPlugin documents (required)")
	f.StringArrayVar(&o.grants, "grant", nil, "grant the plugin a resource, in MapperPlugin spec.grants syntax (repeatable)")
	f.StringArrayVar(&o.reads, "read", nil, "read PROPERTY (of every device that has it) or DEVICE/PROPERTY once and print it (repeatable)")
	f.StringArrayVar(&o.writes, "write", nil, "write PROPERTY=VALUE or DEVICE/PROPERTY=VALUE as a desired value, then read it back (repeatable)")
	f.BoolVar(&o.watch, "watch", false, "show a live table of every property (value, age, error) when stdout is a terminal")
	f.DurationVar(&o.duration, "for", 0, "stop showing readings after this long (default: until Ctrl-C)")
	f.StringVar(&o.logLevel, "log-level", "info", "log level of the host and the plugin: debug, info, warn or error")
	f.StringVar(&o.secretsDir, "secrets-dir", "", "folder of the secrets the grants name (DIR/NAME/KEY files, as wapper-host's --secrets-dir)")
	f.StringVar(&o.cache, "compile-cache", "", "folder that keeps compiled modules across runs, as wapper-host's state dir does (default: compile every run)")
	_ = c.MarkFlagRequired("device")
	return c
}

func (o *runOptions) run(cmd *cobra.Command, file string) (err error) {
	oneShot := len(o.reads) > 0 || len(o.writes) > 0
	if oneShot && (o.watch || o.duration > 0) {
		return errors.New("--read and --write run once; they do not combine with --watch or --for")
	}
	if o.duration < 0 {
		return fmt.Errorf("--for %s: want a positive duration", o.duration)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	wasm, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	set, err := runLoadDevices(o.device)
	if err != nil {
		return err
	}
	plugin, err := runPluginFor(file, set, o.grants)
	if err != nil {
		return err
	}

	out := cmd.OutOrStdout()
	table := o.watch && runIsTerminal(out)
	// While a table is drawn on the terminal that also shows the log, the
	// log goes under the table rather than through it.
	logOut := &runLogTail{max: 8, pass: cmd.ErrOrStderr()}
	var tail *runLogTail
	if table && runIsTerminal(cmd.ErrOrStderr()) {
		tail = logOut
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	mgr, closeAll, err := runStartManager(wasm, o.cache, hostio.SecretDir(o.secretsDir), log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeAll(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	events, unsubscribe := mgr.SubscribeFunc("plugin-run", 4096, func(ev *devices.Event) bool {
		return ev.Type == devices.EventReading || ev.Type == devices.EventReport || ev.Type == devices.EventState && ev.Changed
	})
	defer unsubscribe()
	log.Info("running plugin", "file", file, "plugin", plugin.Name, "protocols", plugin.Spec.Protocols,
		"grants", plugin.Spec.Grants.List(), "devices", len(set.Devices))
	applyErr := mgr.Apply(ctx, "run", devices.ResourceSet{Devices: set.Devices, Models: set.Models, Plugins: []*v1alpha1.MapperPlugin{plugin}})
	if ctx.Err() != nil {
		return nil // interrupted while starting
	}
	if applyErr != nil {
		return applyErr
	}
	if err := runRefused(mgr.Devices()); err != nil {
		return err
	}
	if oneShot {
		return o.readWrite(ctx, mgr, out, cmd.ErrOrStderr())
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	if table {
		runWatchTable(ctx, mgr, out, tail)
		return nil
	}
	runStream(ctx, events, out)
	return nil
}

// runLoadDevices parses the --device file with the host's manifest parser.
func runLoadDevices(path string) (*manifest.Set, error) {
	if path == "" {
		return nil, errors.New("--device is required: a YAML file with a Device and its DeviceModel")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	set := manifest.Parse(path, data)
	if len(set.Problems) > 0 {
		msgs := make([]string, len(set.Problems))
		for i, p := range set.Problems {
			msgs[i] = p.Error()
		}
		return nil, fmt.Errorf("%d bad documents, as wapper-host would refuse them:\n  %s", len(msgs), strings.Join(msgs, "\n  "))
	}
	if len(set.Devices) == 0 {
		return nil, fmt.Errorf("%s has no Device (%s); add one with its DeviceModel", path, manifest.DevicesAPIVersion)
	}
	return set, nil
}

// runPlugin returns the MapperPlugin to run FILE as: the one of the YAML,
// or one named after FILE for the models' protocols, with the --grant
// entries added, defaulted and validated.
func runPluginFor(file string, set *manifest.Set, grantFlags []string) (*v1alpha1.MapperPlugin, error) {
	var p *v1alpha1.MapperPlugin
	switch len(set.Plugins) {
	case 0:
		var protos []string
		for _, m := range set.Models {
			if !slices.Contains(protos, m.Spec.Protocol) {
				protos = append(protos, m.Spec.Protocol)
			}
		}
		p = &v1alpha1.MapperPlugin{ObjectMeta: metav1.ObjectMeta{Name: runPluginName(file)},
			Spec: v1alpha1.MapperPluginSpec{Protocols: protos, Module: v1alpha1.Module{File: "module.wasm"}}}
	case 1:
		p = set.Plugins[0].DeepCopy()
	default:
		return nil, fmt.Errorf("the --device file has %d MapperPlugins; plugin run runs one module, so keep one (or none)", len(set.Plugins))
	}
	for _, g := range grantFlags {
		if err := runAddGrant(&p.Spec.Grants, g); err != nil {
			return nil, err
		}
	}
	p.Default()
	if errs := p.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("MapperPlugin %s: %v", p.Name, errs.ToAggregate())
	}
	if _, err := hostio.ParseGrants(p.Spec.Grants.Set()); err != nil {
		return nil, fmt.Errorf("MapperPlugin %s: spec.grants: %w", p.Name, err)
	}
	return p, nil
}

var runNonName = regexp.MustCompile(`[^a-z0-9.-]+`)

// runPluginName makes a MapperPlugin name from a module file name.
func runPluginName(file string) string {
	n := strings.TrimSuffix(strings.ToLower(filepath.Base(file)), ".wasm")
	n = strings.Trim(runNonName.ReplaceAllString(n, "-"), "-.")
	if n == "" {
		return "plugin"
	}
	return n
}

// runAddGrant adds one --grant value to g. It is a MapperPlugin spec.grants
// entry, checked by the same parsers: tcp://, udp:// or tls:// is network,
// an absolute path is serial, and network:, serial:, gpio:, listen: or
// secret: say it outright.
func runAddGrant(g *v1alpha1.Grants, s string) error {
	kind, val := "", s
	if k, v, ok := strings.Cut(s, ":"); ok && (k == "network" || k == "serial" || k == "gpio" || k == "listen" || k == "secret") {
		kind, val = k, v
	} else if strings.Contains(s, "://") {
		kind = "network"
	} else if strings.HasPrefix(s, "/") {
		kind = "serial"
	}
	var err error
	switch kind {
	case "network":
		if _, err = grant.ParseNetwork(val); err == nil {
			g.Network = append(g.Network, val)
		}
	case "serial":
		if err = grant.ValidateSerial(val); err == nil {
			g.Serial = append(g.Serial, val)
		}
	case "gpio":
		if err = grant.ValidateGPIO(val); err == nil {
			g.GPIO = append(g.GPIO, val)
		}
	case "listen":
		if _, err = grant.ParseListen(val); err == nil {
			g.Listen = append(g.Listen, val)
		}
	case "secret":
		if err = grant.ValidateSecret(val); err == nil {
			g.Secrets = append(g.Secrets, val)
		}
	default:
		err = errors.New("want tcp://, udp:// or tls://HOST:PORT (network), an absolute path glob such as /dev/ttyUSB* (serial), gpio:LINE, listen:udp://IP:PORT or secret:NAME, as in MapperPlugin spec.grants")
	}
	if err != nil {
		return fmt.Errorf("bad --grant %q: %w", s, err)
	}
	return nil
}

// runModule resolves every MapperPlugin to the module given on the
// command line.
type runModule []byte

func (w runModule) Module(context.Context, *v1alpha1.MapperPlugin) ([]byte, error) { return w, nil }

// runStartManager starts the host's engine (compiling into cache, or in
// memory) and device manager over a store in a temporary folder. closeAll
// stops them and removes the folder.
func runStartManager(wasm []byte, cache string, secrets hostio.Secrets, log *slog.Logger) (*devices.Manager, func() error, error) {
	dir, err := os.MkdirTemp("", "wapper-plugin-run-")
	if err != nil {
		return nil, nil, err
	}
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		errs = append(errs, os.RemoveAll(dir))
		return errors.Join(errs...)
	}
	fail := func(err error) (*devices.Manager, func() error, error) {
		return nil, nil, errors.Join(err, closeAll())
	}
	st, err := store.Open(dir)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, st.Close)
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: cache, Logger: log})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() error { return eng.Close(context.Background()) })
	mgr, err := devices.New(devices.Options{Engine: eng, Store: st, Modules: runModule(wasm), Secrets: secrets, Logger: log})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return mgr.Close(ctx)
	})
	return mgr, closeAll, nil
}

// runRefused returns an error naming every device that cannot run (refused by
// its plugin, plugin not loaded, model missing).
func runRefused(devs []devices.DeviceStatus) error {
	var msgs []string
	for _, d := range devs {
		if d.Phase == devices.PhaseError {
			msgs = append(msgs, fmt.Sprintf("device %s cannot run: %s", runDevName(d.Namespace, d.Name), d.Reason))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "\n"))
}

func runDevName(ns, name string) string {
	if ns == "" || ns == "default" {
		return name
	}
	return ns + "/" + name
}

// runTarget is one device property named by --read or --write.
type runTarget struct {
	ns, name, prop, value string
}

// runTargets resolves "PROPERTY" (every device that has it) or
// "DEVICE/PROPERTY" (DEVICE is a name or namespace/name).
func runTargets(devs []devices.DeviceStatus, spec string) ([]runTarget, error) {
	dev, prop := "", spec
	if i := strings.LastIndexByte(spec, '/'); i >= 0 {
		dev, prop = spec[:i], spec[i+1:]
	}
	var out []runTarget
	var known []string
	for _, d := range devs {
		if dev != "" && dev != d.Name && dev != d.Namespace+"/"+d.Name {
			continue
		}
		for _, tw := range d.Twins {
			if tw.Property == prop {
				out = append(out, runTarget{ns: d.Namespace, name: d.Name, prop: prop})
			}
			known = append(known, runDevName(d.Namespace, d.Name)+"/"+tw.Property)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q matches no device property; there are: %s", spec, strings.Join(known, ", "))
	}
	return out, nil
}

// readWrite does the --write and then the --read flags, printing
// "device property value" for each on out and each failure on errw.
func (o *runOptions) readWrite(ctx context.Context, mgr *devices.Manager, out, errw io.Writer) error {
	devs := mgr.Devices()
	var todo []runTarget
	for _, w := range o.writes {
		spec, val, ok := strings.Cut(w, "=")
		if !ok {
			return fmt.Errorf("--write %q: want PROPERTY=VALUE or DEVICE/PROPERTY=VALUE", w)
		}
		ts, err := runTargets(devs, spec)
		if err != nil {
			return fmt.Errorf("--write: %w", err)
		}
		for i := range ts {
			ts[i].value = val
		}
		todo = append(todo, ts...)
	}
	nWrites := len(todo)
	for _, r := range o.reads {
		ts, err := runTargets(devs, r)
		if err != nil {
			return fmt.Errorf("--read: %w", err)
		}
		todo = append(todo, ts...)
	}
	status := map[string]devices.DeviceStatus{}
	for _, d := range devs {
		status[d.Namespace+"/"+d.Name] = d
	}
	failed := 0
	for i, t := range todo {
		name := runDevName(t.ns, t.name)
		if d := status[t.ns+"/"+t.name]; d.Phase != devices.PhaseRunning {
			// Pending: its plugin could not add it yet and retries.
			failed++
			fmt.Fprintf(errw, "%s %s: device is %s: %s\n", name, t.prop, d.Phase, d.Reason)
			continue
		}
		if i < nWrites {
			if err := runWrite(ctx, mgr, t); err != nil {
				failed++
				fmt.Fprintf(errw, "%s %s: write %q failed: %v\n", name, t.prop, t.value, err)
				continue
			}
		}
		tw, err := mgr.Read(ctx, t.ns, t.name, t.prop)
		if err != nil {
			failed++
			fmt.Fprintf(errw, "%s %s: read failed: %s\n", name, t.prop, runReadError(mgr, t, err))
			continue
		}
		fmt.Fprintf(out, "%s %s %s\n", name, t.prop, tw.Reported)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d reads and writes failed", failed, len(todo))
	}
	return nil
}

// runWrite sets a desired value the way REST and MQTT do and waits until the
// device loop has written it (or failed to).
func runWrite(ctx context.Context, mgr *devices.Manager, t runTarget) error {
	ts, err := mgr.SetDesired(ctx, t.ns, t.name, t.prop, t.value, "wapper plugin run")
	if err != nil {
		return err
	}
	if err := mgr.WaitApplied(ctx, t.ns, t.name, t.prop, ts.DesiredSeq); err != nil {
		if msg := runTwinError(mgr, t); msg != "" {
			return errors.New(strings.TrimPrefix(msg, "write desired value: "))
		}
		return err
	}
	return nil
}

// runReadError prefers the twin's error, which is the plugin's own with its
// code ("denied by grants: ..."), to the manager's wrapping of it.
func runReadError(mgr *devices.Manager, t runTarget, err error) string {
	if msg := runTwinError(mgr, t); msg != "" {
		return msg
	}
	return err.Error()
}

func runTwinError(mgr *devices.Manager, t runTarget) string {
	d, err := mgr.Device(t.ns, t.name)
	if err != nil {
		return ""
	}
	for _, tw := range d.Twins {
		if tw.Property == t.prop {
			return tw.Error
		}
	}
	return ""
}

// runStream prints readings, new read errors and state changes as
// timestamped lines until ctx ends.
func runStream(ctx context.Context, events <-chan devices.Event, out io.Writer) {
	lastErr := map[string]string{}
	for {
		var ev devices.Event
		select {
		case <-ctx.Done():
			return
		case ev = <-events:
		}
		ts := ev.Time.Format("15:04:05.000")
		name := runDevName(ev.Namespace, ev.Name)
		switch ev.Type {
		case devices.EventReading:
			for _, tw := range ev.Twins {
				fmt.Fprintf(out, "%s %s %s %s\n", ts, name, tw.Property, tw.Reported)
				lastErr[ev.Device+"/"+tw.Property] = ""
			}
		case devices.EventReport: // read errors are in the twins of reports
			for _, tw := range ev.Twins {
				k := ev.Device + "/" + tw.Property
				if tw.Error != "" && tw.Error != lastErr[k] {
					fmt.Fprintf(out, "%s %s %s error: %s\n", ts, name, tw.Property, tw.Error)
				}
				lastErr[k] = tw.Error
			}
		case devices.EventState:
			line := fmt.Sprintf("%s %s state %s", ts, name, ev.State)
			if ev.Reason != "" {
				line += ": " + ev.Reason
			}
			fmt.Fprintln(out, line)
		}
	}
}

// runWatchTable redraws a table of every device property on the terminal out
// until ctx ends, with the last log lines under it when tail is set.
func runWatchTable(ctx context.Context, mgr *devices.Manager, out io.Writer, tail *runLogTail) {
	if tail != nil {
		tail.capture(true)
		defer tail.capture(false)
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		var b bytes.Buffer
		b.WriteString("\x1b[H\x1b[2J") // home, clear screen
		runWriteTable(&b, mgr.Devices(), time.Now())
		if tail != nil {
			b.WriteString("\nlog:\n")
			for _, l := range tail.lines() {
				b.WriteString(l)
			}
		}
		_, _ = out.Write(b.Bytes())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runWriteTable writes one row per device property: value, age, error.
func runWriteTable(w io.Writer, devs []devices.DeviceStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tPROPERTY\tVALUE\tAGE\tERROR")
	sort.Slice(devs, func(i, j int) bool { return devs[i].Namespace+"/"+devs[i].Name < devs[j].Namespace+"/"+devs[j].Name })
	for _, d := range devs {
		name := runDevName(d.Namespace, d.Name)
		state := fmt.Sprintf("(%s, state %s)", d.Phase, d.State)
		if d.StateReason != "" {
			state += ": " + d.StateReason
		}
		fmt.Fprintf(tw, "%s\t\t%s\t\t%s\n", name, state, runOneLine(d.Reason))
		for _, t := range d.Twins {
			age := "-"
			if !t.ReportedTime.IsZero() {
				age = now.Sub(t.ReportedTime).Truncate(100 * time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, t.Property, runOneLine(t.Reported), age, runOneLine(t.Error))
		}
	}
	_ = tw.Flush()
}

func runOneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// runLogTail keeps the last max lines of the log, for the log under the
// table, and passes the log on to pass unless capturing.
type runLogTail struct {
	mu        sync.Mutex
	max       int
	pass      io.Writer
	capturing bool
	buf       []string
}

// capture starts or stops holding the log back from pass (it shows under
// the table meanwhile).
func (l *runLogTail) capture(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.capturing = on
}

func (l *runLogTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.capturing {
		if _, err := l.pass.Write(p); err != nil {
			return 0, err
		}
	}
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line != "" {
			l.buf = append(l.buf, line)
		}
	}
	if n := len(l.buf) - l.max; n > 0 {
		l.buf = append([]string(nil), l.buf[n:]...)
	}
	return len(p), nil
}

func (l *runLogTail) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.buf...)
}

// runIsTerminal reports whether w is a character device (a terminal).
func runIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
