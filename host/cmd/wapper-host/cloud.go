package main

// The cloud link (host/cloudlink, issue 8): with --cloud, wapper-host takes
// devices, models and plugins from wapper-cloud as source "cloud" (beside
// --manifests; a name both provide is refused by the device manager),
// fetches modules through the cloud when the registry is out of reach, and
// reports twins, device states and plugin states back.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"wapper.dev/wapper/abi"
	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/cli"
	"wapper.dev/wapper/linkproto"
)

// cloudOptions are the cloud link's flags.
type cloudOptions struct {
	url, node, tokenFile, caFile   string
	keepalive, timeout, maxBackoff time.Duration
	compression                    bool
}

// validate refuses an incomplete or insecure cloud setting before the
// host starts: --cloud must be https:// (the link carries the node's
// token), and --node and --token-file go with it.
func (o cloudOptions) validate() error {
	if o.url == "" {
		if o.node != "" || o.tokenFile != "" {
			return cli.Usagef("--node and --token-file need --cloud")
		}
		return nil
	}
	if o.node == "" || o.tokenFile == "" {
		return cli.Usagef("--cloud needs --node and --token-file")
	}
	if err := cloudlink.CheckURL(o.url); err != nil {
		return &cli.UsageError{Err: err}
	}
	if o.keepalive <= 0 || o.timeout <= 0 || o.maxBackoff <= 0 {
		return cli.Usagef("--cloud-keepalive, --cloud-timeout and --cloud-max-backoff must be positive")
	}
	if o.timeout < 2*o.keepalive {
		return cli.Usagef("--cloud-timeout %s is less than twice --cloud-keepalive %s: a healthy link would be dropped", o.timeout, o.keepalive)
	}
	return nil
}

func addCloudFlags(f *pflag.FlagSet, o *cloudOptions) {
	f.StringVar(&o.url, "cloud", "", "wapper-cloud URL (https://host:8443), or several separated by commas (its replicas, when no Service spreads hosts among them: each reconnect tries the next); empty runs without a cloud")
	f.StringVar(&o.node, "node", "", "this host's node name in the cluster (with --cloud)")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the node's bearer token (wapper-cloud token NODE prints it)")
	f.StringVar(&o.caFile, "ca-file", "", "PEM certificate(s) to trust for wapper-cloud (its --ca-out, or tls.crt of its TLS Secret)")
	f.DurationVar(&o.keepalive, "cloud-keepalive", cloudlink.DefaultKeepalive, "how often to ping wapper-cloud")
	f.DurationVar(&o.timeout, "cloud-timeout", cloudlink.DefaultTimeout, "drop the link and reconnect after hearing nothing from wapper-cloud this long (a half-open link); at least twice --cloud-keepalive")
	f.DurationVar(&o.maxBackoff, "cloud-max-backoff", cloudlink.DefaultMaxBackoff, "longest wait between reconnect attempts (each wait is drawn between half and all of the current delay, which doubles from 500ms; after the cloud closed a session that lasted, the first is drawn between 250ms and this)")
	f.BoolVar(&o.compression, "cloud-compression", false, "ask wapper-cloud for websocket permessage-deflate; used when it offers it too (wapper-cloud --link-compression)")
}

// cloudModules resolves modules from the registry directly and, once the
// link is up, falls back to the cloud's pull-through endpoint. It keeps the
// digest of the module it last gave the device manager for each plugin,
// which is the module the plugin runs once loaded (the manager asks for a
// module only to load it), for the plugin's status in the cloud.
type cloudModules struct {
	direct devices.ModuleResolver
	link   atomic.Pointer[cloudlink.Link]

	mu      sync.Mutex
	digests map[string]string // plugin name → "sha256:<hex>" of the module bytes
}

// Module implements devices.ModuleResolver.
func (c *cloudModules) Module(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error) {
	var b []byte
	var err error
	if l := c.link.Load(); l != nil {
		b, err = l.Module(ctx, p)
	} else {
		b, err = c.direct.Module(ctx, p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		delete(c.digests, p.Name)
		return nil, err
	}
	if c.digests == nil {
		c.digests = map[string]string{}
	}
	c.digests[p.Name] = digest.FromBytes(b).String()
	return b, nil
}

// Digest returns the digest of the module last resolved for the plugin
// name (sha256 of its bytes, as OCI writes digests), or "" when none was,
// or the last resolution failed.
func (c *cloudModules) Digest(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.digests[name]
}

// reporter is what forwardReports sends reports to: the cloud link.
type reporter interface {
	ReportDevice(linkproto.DeviceReport) error
	ReportPlugin(linkproto.PluginReport) error
}

// startCloud starts, in the inputs stage, the link and the forwarding of
// reports to it when --cloud is set (validate has checked the options). A
// link that stops by itself is logged; the host keeps running.
func startCloud(o cloudOptions, lc *lifecycle, st *store.Store, mgr *devices.Manager, mods *cloudModules, stateDir string, reg prometheus.Registerer, log *slog.Logger) error {
	if o.url == "" {
		return nil
	}
	if err := o.validate(); err != nil {
		return err
	}
	tok, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return fmt.Errorf("read --token-file: %w", err)
	}
	opts := cloudlink.Options{
		URL: o.url, Node: o.node, Token: strings.TrimSpace(string(tok)), DB: st.DB(),
		Direct: mods.direct, ModuleDir: filepath.Join(stateDir, "modules"),
		Logger: log, Registerer: reg,
		Keepalive: o.keepalive, Timeout: o.timeout, MaxBackoff: o.maxBackoff, Compression: o.compression,
		Sink: cloudlink.SinkFunc(func(ctx context.Context, s cloudlink.Set) error {
			return mgr.Apply(ctx, cloudlink.Source, devices.ResourceSet{Devices: s.Devices, Models: s.Models, Plugins: s.Plugins})
		}),
	}
	if o.caFile != "" {
		if opts.TLS, err = cloudlink.LoadCA(o.caFile); err != nil {
			return err
		}
	}
	link, err := cloudlink.New(opts)
	if err != nil {
		return err
	}
	mods.link.Store(link)
	lc.Go(stageInputs, "cloud link", func(ctx context.Context) error {
		if err := link.Run(ctx); err != nil {
			log.Error("cloud link stopped", "err", err)
		}
		return nil
	})
	events, unsubscribe := mgr.SubscribeFunc("cloud", 4096, forwarded)
	lc.Go(stageInputs, "cloud reports", func(ctx context.Context) error {
		defer unsubscribe()
		forwardReports(ctx, mgr, link, mods.Digest, events, log)
		return nil
	})
	log.Info("cloud link started", "cloud", o.url, "node", o.node)
	return nil
}

// online tells the states in which edgecore sets a device's
// lastOnlineTime (edge/pkg/devicetwin/dtmanager, dealDeviceStateUpdate).
func online(st abi.State) bool { return st == abi.StateOK || st == abi.StateOnline }

// forwarded tells the device events the cloud gets: every twin report,
// every change of state, and every ok or online state report even
// unchanged, since edgecore refreshes lastOnlineTime on each of those.
func forwarded(ev *devices.Event) bool {
	switch ev.Type {
	case devices.EventReport:
		return true
	case devices.EventState:
		return ev.Changed || online(ev.State)
	}
	return false
}

// deviceReport is the cloud's report of a device event that forwarded
// keeps: twins as KubeEdge writes them, or the state, with lastOnlineTime
// at the time of the report when the state is ok or online (edgecore's
// rule; other states leave the last one in place).
func deviceReport(ev *devices.Event) linkproto.DeviceReport {
	r := linkproto.DeviceReport{Namespace: ev.Namespace, Name: ev.Name}
	switch ev.Type {
	case devices.EventReport:
		for _, t := range ev.Twins {
			r.Twins = append(r.Twins, kubeedgeTwin(t))
		}
	case devices.EventState:
		r.State = ev.State.String()
		if online(ev.State) {
			r.LastOnlineTime = ev.Time.UTC().Format(time.RFC3339)
		}
	}
	return r
}

// forwardReports sends the twins and states of the cloud's devices, and
// the state of the cloud's plugins with the digest of their modules, to
// the link.
func forwardReports(ctx context.Context, mgr *devices.Manager, link reporter, digestOf func(plugin string) string, events <-chan devices.Event, log *slog.Logger) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	plugins := map[string]linkproto.PluginReport{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			reportPlugins(mgr, link, digestOf, plugins, log)
		case ev, ok := <-events:
			if !ok {
				return
			}
			d, err := mgr.Device(ev.Namespace, ev.Name)
			if err != nil || d.Source != cloudlink.Source {
				continue
			}
			if err := link.ReportDevice(deviceReport(&ev)); err != nil {
				log.Warn("cloud report not queued", "device", ev.Device, "err", err)
			}
		}
	}
}

// kubeedgeTwin is a twin as KubeEdge writes it to DeviceStatus: the type
// as edgecore spells it (int, float, boolean, string) and timestamps in
// milliseconds.
func kubeedgeTwin(t devices.TwinStatus) devicesv1beta1.Twin {
	ty, _ := abi.ParseType(t.Type)
	meta := func(at time.Time) map[string]string {
		m := map[string]string{"type": ty.TwinType()}
		if !at.IsZero() {
			m["timestamp"] = fmt.Sprint(at.UnixMilli())
		}
		return m
	}
	tw := devicesv1beta1.Twin{PropertyName: t.Property}
	tw.Reported.Value, tw.Reported.Metadata = t.Reported, meta(t.ReportedTime)
	if t.Desired != "" {
		tw.ObservedDesired.Value, tw.ObservedDesired.Metadata = t.Desired, meta(t.DesiredTime)
	}
	return tw
}

// reportPlugins derives each cloud plugin's state from its devices:
// Loaded when one runs on it, Failed with the reason when its devices fail
// because of it, Pending otherwise; with the digest of the module it runs
// (Loaded, as the manager tells, else digestOf) or tried to run (Failed,
// as digestOf tells), and after a rolled-back hot upgrade the module
// rejected and why. Only changes are reported.
func reportPlugins(mgr *devices.Manager, link reporter, digestOf func(plugin string) string, last map[string]linkproto.PluginReport, log *slog.Logger) {
	cur := map[string]linkproto.PluginReport{}
	for _, d := range mgr.Devices() {
		if d.Source != cloudlink.Source || d.Plugin == "" {
			continue
		}
		r, seen := cur[d.Plugin]
		switch {
		case d.Phase == devices.PhaseRunning:
			r = linkproto.PluginReport{Name: d.Plugin, Phase: string(mappersv1alpha1.PhaseLoaded), Digest: digestOf(d.Plugin)}
		case r.Phase == string(mappersv1alpha1.PhaseLoaded):
		case d.Phase == devices.PhaseError && strings.Contains(d.Reason, d.Plugin):
			r = linkproto.PluginReport{Name: d.Plugin, Phase: string(mappersv1alpha1.PhaseFailed), Digest: digestOf(d.Plugin), Message: d.Reason}
		case !seen:
			r = linkproto.PluginReport{Name: d.Plugin, Phase: string(mappersv1alpha1.PhasePending)}
		}
		cur[d.Plugin] = r
	}
	for name, r := range cur {
		if st, ok := mgr.Plugin(name); ok && st.Loaded && r.Phase == string(mappersv1alpha1.PhaseLoaded) {
			// The module the devices run: during a hot upgrade the old
			// one until they have moved, after a rollback the old one
			// with the rejected module and why.
			if st.Digest != "" {
				r.Digest = st.Digest
			}
			r.RejectedDigest = st.RejectedDigest
			if st.RejectedDigest != "" {
				r.Message = st.Rejected
			}
			cur[name] = r
		}
		if last[name] == r {
			continue
		}
		if err := link.ReportPlugin(r); err != nil {
			log.Warn("cloud plugin report not queued", "plugin", name, "err", err)
			continue
		}
		last[name] = r
	}
}
