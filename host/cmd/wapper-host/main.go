// Command wapper-host is wapper's edge daemon: it runs KubeEdge device
// mappers as sandboxed WebAssembly plugins. Standalone, it reads Device,
// DeviceModel and MapperPlugin YAML from a folder (watched, applied live),
// keeps twins and state in bbolt, publishes on KubeEdge's MQTT topics
// (embedded broker or an external one) and serves mapper-framework's REST
// API with Prometheus metrics.
//
// Every flag can also be set in a YAML file given with --config, keyed by
// the flag name (for example "http-listen: 127.0.0.1:7777"); flags on the
// command line win. The command line follows internal/cli's conventions:
// --help exits 0, a bad flag or setting exits 2.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"wapper.dev/wapper/host/console"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/host/memlimit"
	"wapper.dev/wapper/host/mqtt"
	"wapper.dev/wapper/host/push"
	"wapper.dev/wapper/host/rest"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/cli"
	"wapper.dev/wapper/registry/client"
	"wapper.dev/wapper/registry/fetch"
)

type options struct {
	config        string
	manifests     string
	stateDir      string
	mqttListen    string
	mqttBroker    string
	mqttClientID  string
	mqttUser      string
	mqttPassword  string
	httpListen    string
	pluginDir     string
	secretsDir    string
	log           cli.Log
	memoryLimit   memlimit.Setting
	collectCycle  time.Duration
	reportCycle   time.Duration
	stateCycle    time.Duration
	flushInterval time.Duration
	pprof         bool
	pushFormat    push.Format
	sinkBuffer    int
	registry      client.Options
	dmi           dmiOptions
	cloud         cloudOptions
	sec           securityOptions

	// shutdownTimeout bounds the shutdown after SIGINT/SIGTERM.
	shutdownTimeout time.Duration
}

// manifestDebounce is how long the manifests folder must be quiet before
// a change is applied.
const manifestDebounce = 300 * time.Millisecond

func main() {
	// Signals are handled by run (see shutdown.go), not by a context here.
	os.Exit(cli.Run(context.Background(), command(), os.Args[1:], os.Stderr))
}

func command() *cobra.Command {
	cmd, _ := newCommand()
	return cmd
}

// newCommand returns the command and the options its flags set.
func newCommand() (*cobra.Command, *options) {
	var o options
	cmd := &cobra.Command{
		Use:   "wapper-host",
		Short: "Run KubeEdge device mappers as sandboxed WebAssembly plugins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfigFile(cmd.Flags(), o.config); err != nil {
				return &cli.UsageError{Err: err}
			}
			if err := o.validate(); err != nil {
				return err
			}
			return run(o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "YAML file of settings keyed by flag name; flags given on the command line win")
	f.StringVar(&o.manifests, "manifests", "", "folder of Device, DeviceModel and MapperPlugin YAML, watched for changes")
	f.StringVar(&o.stateDir, "state-dir", "/var/lib/wapper", "folder for the bbolt state database and the compile and module caches")
	f.StringVar(&o.mqttListen, "mqtt-listen", mqtt.DefaultAddr, "address of the embedded MQTT broker; empty for none")
	f.StringVar(&o.mqttBroker, "mqtt-broker", "", "URL of an external MQTT broker (tcp://host:1883) to use instead of the embedded one")
	f.StringVar(&o.mqttClientID, "mqtt-client-id", "wapper-host", "client id on the external MQTT broker")
	f.StringVar(&o.mqttUser, "mqtt-username", "", "user name on the external MQTT broker")
	f.StringVar(&o.mqttPassword, "mqtt-password", "", "password on the external MQTT broker (prefer the config file)")
	f.StringVar(&o.httpListen, "http-listen", rest.DefaultAddr, "address of the REST API and /metrics; empty for none")
	f.StringVar(&o.pluginDir, "plugin-dir", "", "folder that MapperPlugin spec.module.file is relative to")
	f.StringVar(&o.secretsDir, "secrets-dir", "", "folder of the secrets MapperPlugin grants.secrets and grants.tls name, as a mounted Kubernetes Secret lays them out (NAME/KEY files); default STATE-DIR/secrets")
	cli.AddLogFlags(f, &o.log)
	f.Var(&o.memoryLimit, "memory-limit", fmt.Sprintf("soft memory limit of the Go runtime: auto (%s plus %s per device, following the device count), off (or 0), or a size such as 512MiB; GOMEMLIMIT in the environment wins",
		humanSize(memlimit.DefaultBase), humanSize(memlimit.DefaultPerDevice)))
	f.DurationVar(&o.collectCycle, "default-collect-cycle", time.Second, "collect cycle of properties that set none")
	f.DurationVar(&o.reportCycle, "default-report-cycle", time.Second, "report cycle of properties that set none")
	f.DurationVar(&o.stateCycle, "state-cycle", 10*time.Second, "how often device state is asked for and published, unless spec.stateReport sets it")
	o.pushFormat = push.MapperFramework
	f.Var(&o.pushFormat, "push-format", "payload of pushMethod.http and pushMethod.mqtt: mapper-framework (the form and text of KubeEdge's generated mappers) or json (the whole reading)")
	f.IntVar(&o.sinkBuffer, "sink-buffer", 100000, "readings kept on disk per data sink (pushMethod.dbMethod, pushMethod.otel) while it cannot take them; past it the oldest are dropped")
	f.BoolVar(&o.pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on --http-listen")
	f.DurationVar(&o.flushInterval, "flush-interval", 2*time.Second, "how often reported values are saved to the state database")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "after SIGINT or SIGTERM, how long to wait for devices, plugins and saves to finish before exiting anyway; a second signal exits at once")
	o.registry.FlagPrefix = "registry-" // errors name --registry-plain-http, not wapper's --plain-http
	f.BoolVar(&o.registry.PlainHTTP, "registry-plain-http", false, "pull spec.module.image over plain HTTP (loopback registries only)")
	f.StringVar(&o.registry.CAFile, "registry-ca-file", "", "PEM certificates to trust for OCI registries")
	f.StringVar(&o.registry.DockerConfig, "registry-config", "", "docker config file with registry credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	addDMIFlags(f, &o.dmi)
	addCloudFlags(f, &o.cloud)
	addSecurityFlags(f, &o.sec)
	return cmd, &o
}

// applyConfigFile sets every flag not given on the command line from the
// YAML file.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read --config: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for k, v := range m {
		fl := fs.Lookup(k)
		if fl == nil || k == "config" {
			return fmt.Errorf("config file %s: unknown setting %q (settings are named like the flags, see --help)", path, k)
		}
		if fl.Changed {
			continue
		}
		if err := fs.Set(k, fmt.Sprint(v)); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// defaultShutdownTimeout is --shutdown-timeout.
const defaultShutdownTimeout = 10 * time.Second

// humanSize writes a size in MiB or KiB for --help.
func humanSize(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// validate checks the settings that need no I/O, so that a bad one is
// refused (exit status 2) before anything starts.
func (o *options) validate() error {
	if o.shutdownTimeout <= 0 {
		return cli.Usagef("--shutdown-timeout %s: want a positive duration, such as 10s", o.shutdownTimeout)
	}
	return o.cloud.validate()
}

// run runs wapper-host until a signal or the first failure of a
// component, and returns once everything has stopped.
//
// Components (each a Run(ctx) in the lifecycle, see lifecycle.go) and the
// shutdown order, stage by stage; a stage stops only once the stages
// before it have returned:
//  1. inputs: the REST API, the manifests watcher, the DMI bridge, the
//     cloud link and its report forwarder (no new device, change or
//     request comes in);
//  2. outputs: the MQTT bridge, the pushMethod.http pusher and the
//     unsupported-pushMethod warner (they finish the events received);
//  3. the MQTT connection (embedded broker or external client);
//  4. core: the devices manager (closed within --shutdown-timeout) and
//     the memory limiter;
//  5. then, outside the lifecycle: the plugin engine, the state store.
//
// The first signal, or a component's failure, begins the shutdown; a
// second signal or the end of --shutdown-timeout exits at once, logging
// the components left running.
func run(o options) error {
	log := o.log.Logger(os.Stderr)
	slog.SetDefault(log)
	sec, err := loadSecurity(o)
	if err != nil {
		return err
	}
	sd := handleSignals(log, o.shutdownTimeout)
	defer sd.end() // last: the deferred closes below run within the shutdown timeout
	ctx := sd.ctx

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	st, err := store.Open(o.stateDir)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Warn("state database closed incompletely", "err", err)
		}
	}()
	// The limiter counts the manager's devices once it runs (after the
	// manager exists); the engine lifts the limit while it compiles.
	var mgr *devices.Manager
	lim, err := memlimit.New(memlimit.Options{Setting: o.memoryLimit, Devices: func() int { return mgr.DeviceCount() }, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(o.stateDir, "compile-cache"), Logger: log, Metrics: runtime.NewMetrics(reg),
		OnLoad: lim.Loosen})
	if err != nil {
		return fmt.Errorf("start plugin engine: %w", err)
	}
	defer func() {
		cctx, cancel := sd.closeContext()
		defer cancel()
		if err := eng.Close(cctx); err != nil {
			log.Warn("plugin engine closed incompletely", "err", err)
		}
	}()
	pluginDir := o.pluginDir
	if pluginDir != "" {
		if pluginDir, err = filepath.Abs(pluginDir); err != nil {
			return fmt.Errorf("--plugin-dir: %w", err)
		}
	}
	mods := &cloudModules{direct: devices.ModuleLoader{PluginDir: pluginDir, CacheDir: filepath.Join(o.stateDir, "modules"),
		Fetch: fetch.Options{Logger: log, Client: o.registry}}}
	secrets := newSecrets(&o, &mods.link, log)
	mgr, err = devices.New(devices.Options{
		Engine: eng, Store: st, Logger: log, Registerer: reg,
		Modules:             mods,
		Secrets:             secrets,
		DefaultCollectCycle: o.collectCycle, DefaultReportCycle: o.reportCycle, StateCycle: o.stateCycle, FlushInterval: o.flushInterval,
	})
	if err != nil {
		return err
	}

	lc := newLifecycle(ctx, log, sd.begin)
	sd.reportLeft(lc.Running)
	// From here on, a failure goes through lc.Fail so that what started
	// stops in order.
	lc.Go(stageCore, "devices", managerRun{mgr: mgr, closeContext: sd.closeContext, log: log}.Run)
	// Resume from our own state first, so devices run before manifests are
	// read again (and keep running if the folder is unreadable).
	if err := mgr.Restore(ctx); err != nil {
		lc.Fail(err)
		return lc.Wait()
	}
	lc.Go(stageCore, "memory limiter", lim.Run)

	if err := startInputsOutputs(ctx, o, sec, lc, mgr, st, mods, secrets, reg, log); err != nil {
		lc.Fail(err)
		return lc.Wait()
	}
	log.Info("wapper-host running", "state-dir", o.stateDir, "manifests", o.manifests, "plugin-dir", pluginDir)
	return lc.Wait() // handleSignals logs the signal
}

// startInputsOutputs starts the stages above the core: the MQTT
// connection, the outputs, then the inputs (see run).
func startInputsOutputs(ctx context.Context, o options, sec *security, lc *lifecycle, mgr *devices.Manager, st *store.Store, mods *cloudModules, secrets hostio.Secrets, reg *prometheus.Registry, log *slog.Logger) error {
	problems := rest.NewProblems(reg)

	// MQTT: embedded broker or external one.
	var bus mqtt.Conn
	switch {
	case o.mqttBroker != "":
		c, err := mqtt.Dial(ctx, mqtt.ClientOptions{URL: o.mqttBroker, ClientID: o.mqttClientID, Username: o.mqttUser, Password: o.mqttPassword, Logger: log})
		if err != nil {
			return err
		}
		bus = c
		log.Info("using external MQTT broker", "url", o.mqttBroker)
	case o.mqttListen != "" || o.sec.mqttTLSListen != "":
		b, err := mqtt.Serve(mqtt.BrokerOptions{Addr: o.mqttListen, TLSAddr: o.sec.mqttTLSListen, TLS: sec.mqttTLS,
			Username: sec.mqttUser, Password: sec.mqttPassword, Logger: log})
		if err != nil {
			return err
		}
		bus = b
		log.Info("embedded MQTT broker listening", "addr", b.Addr(), "tls-addr", b.TLSAddr(), "password", sec.mqttUser != "")
		sec.warnBroker(log, b.Addr(), b.TLSAddr())
	}
	if bus != nil {
		lc.Go(stageBus, "MQTT connection", func(ctx context.Context) error {
			<-ctx.Done()
			if err := bus.Close(); err != nil {
				log.Warn("MQTT connection closed incompletely", "err", err)
			}
			return nil
		})
	}
	if err := startPushes(o, lc, mgr, bus, st, secrets, log, reg); err != nil {
		return err
	}

	// Serve REST before reading manifests, so that a host with many
	// devices can be watched while it starts them.
	if o.httpListen != "" {
		srv := rest.New(mgr, rest.Options{Logger: log, Gatherer: reg, Problems: problems, Pprof: o.pprof,
			Token: sec.httpToken, AuthReads: sec.httpAuthReads, TLS: sec.httpTLS})
		// The device console, on the same port and behind the same token.
		con := console.New(mgr, console.Options{Logger: log, Gatherer: reg})
		con.Mount(srv)
		addr, err := srv.Listen(o.httpListen)
		if err != nil {
			return err
		}
		con.Subscribe()
		lc.Go(stageInputs, "device console", con.Run) // ends its event streams, so the REST API stops without waiting for them
		lc.Go(stageInputs, "REST API", srv.Run)
		scheme := "http"
		if sec.httpTLS != nil {
			scheme = "https"
		}
		log.Info("REST API listening", "addr", addr, "try", "curl "+scheme+"://"+addr+"/api/v1/devices", "token", sec.httpToken != "", "client-certs", sec.httpClientCerts)
		log.Info("console at " + scheme + "://" + addr + "/")
		sec.warnREST(log, addr)
	}
	if o.manifests != "" {
		loaded := time.Now()
		set, err := manifest.Load(o.manifests)
		if err != nil {
			log.Error("manifests not loaded; running on saved state", "err", err)
		} else {
			applyManifestSet(ctx, mgr, set, problems, log)
		}
		lc.Go(stageInputs, "manifests watcher", func(ctx context.Context) error {
			apply := func(set *manifest.Set) { applyManifestSet(ctx, mgr, set, problems, log) }
			if err := manifest.Watch(ctx, o.manifests, loaded, manifestDebounce, log, apply); err != nil {
				log.Error("manifest folder not watched; restart to pick up changes", "err", err)
			}
			return nil // the host keeps running its devices
		})
	}

	// Devices from KubeEdge edgecore (DMI) and from wapper-cloud, beside the
	// manifests; the manager refuses a name two sources provide.
	if err := startDMI(o.dmi, lc, mgr, st, log, reg); err != nil {
		return err
	}
	return startCloud(o.cloud, lc, st, mgr, mods, o.stateDir, reg, log)
}

// managerRun is the devices manager's lifecycle in wapper-host. It is
// Manager.Run split in two, because the daemon restores the manager before
// it starts its inputs (so devices run before manifests are read again) and
// bounds the close by the process's shutdown deadline rather than by
// Options.CloseTimeout: run restores, and Run waits for ctx to end, then
// closes the manager, logging what was left behind rather than failing the
// exit status.
type managerRun struct {
	mgr          *devices.Manager
	closeContext func() (context.Context, context.CancelFunc)
	log          *slog.Logger
}

// Run waits for ctx to end, then closes the manager.
func (r managerRun) Run(ctx context.Context) error {
	<-ctx.Done()
	cctx, cancel := r.closeContext()
	defer cancel()
	if err := r.mgr.Close(cctx); err != nil {
		r.log.Warn("devices closed incompletely", "err", err)
	}
	return nil
}

// manifestsSource is the device manager's source name of the manifests
// folder.
const manifestsSource = "manifests"

// applyManifestSet applies what the manifests folder holds and logs a
// summary whose problems count everything that is not running as written:
// documents that did not load, objects refused, MapperPlugins that failed
// to load (a module file missing, a pull that failed) and devices in error.
func applyManifestSet(ctx context.Context, mgr *devices.Manager, set *manifest.Set, problems *rest.Problems, log *slog.Logger) {
	problems.Set(set.Problems)
	for _, p := range set.Problems {
		log.Error("bad manifest", "file", p.File, "doc", p.Doc, "kind", p.Kind, "name", p.Name, "field", p.Field, "reason", p.Reason)
	}
	err := mgr.Apply(ctx, manifestsSource, devices.ResourceSet{Devices: set.Devices, Models: set.Models, Plugins: set.Plugins})
	if err != nil {
		log.Error("manifests partly refused", "err", err)
	}
	n := len(set.Problems)
	var failedPlugins []string
	devicesInError := 0
	for _, p := range mgr.Problems() {
		if p.Source != manifestsSource {
			continue
		}
		n++
		switch p.Kind {
		case devices.KindMapperPlugin:
			failedPlugins = append(failedPlugins, p.Name)
		case devices.KindDevice:
			devicesInError++
		}
	}
	args := []any{"devices", len(set.Devices), "models", len(set.Models), "plugins", len(set.Plugins), "problems", n}
	if len(failedPlugins) > 0 {
		args = append(args, "failed-plugins", strings.Join(failedPlugins, ","))
	}
	if devicesInError > 0 {
		args = append(args, "devices-in-error", devicesInError)
	}
	if n > 0 {
		args = append(args, "see", "GET /api/v1/manifests/errors and the errors above")
		log.Warn("manifests applied", args...)
		return
	}
	log.Info("manifests applied", args...)
}
