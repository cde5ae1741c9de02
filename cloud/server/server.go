// Package server assembles wapper-cloud: the controller (with staged
// rollouts), the hub, the status writer, node authentication and the
// module endpoint, behind one TLS listener. cmd/wapper-cloud is a thin
// flag layer over Run, which composes the components' Run methods and
// writes down their shutdown order.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"wapper.dev/wapper/cloud/certs"
	"wapper.dev/wapper/cloud/console"
	"wapper.dev/wapper/cloud/controller"
	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/cloud/modules"
	"wapper.dev/wapper/cloud/nodeauth"
	"wapper.dev/wapper/cloud/replicas"
	"wapper.dev/wapper/cloud/rollout"
	"wapper.dev/wapper/cloud/status"
	"wapper.dev/wapper/linkproto"
	"wapper.dev/wapper/registry/fetch"
)

// Defaults of Config (wapper-cloud's flags).
const (
	// DefaultListen is the address hosts connect to.
	DefaultListen = ":8443"
	// DefaultNamespace holds the node token Secrets and the TLS Secret.
	DefaultNamespace = "wapper-system"
	// DefaultTLSSecret keeps the generated certificate.
	DefaultTLSSecret = "wapper-cloud-tls"
	// DefaultWorkers is the number of reconcile workers.
	DefaultWorkers = controller.DefaultWorkers
)

// LeaseQPSFactor is how many times the main API client's QPS and burst
// (wapper-cloud --kube-api-qps) the client of the node Leases gets, as a
// rate limit of its own (the replica's heartbeat and the leader election
// have another client, with the main client's rate limit): a replica claims a node's Lease at each hello (a read and a
// write, and a read of the holder's heartbeat when another replica holds
// it) and releases it when the host leaves (a write); renewals are one
// heartbeat write per --lease-renew, whatever the number of nodes.
const LeaseQPSFactor = 5

// Config configures Run.
type Config struct {
	// Rest reaches the API server.
	Rest *rest.Config
	// Namespace holds the node token Secrets and the TLS Secret.
	Namespace string
	// PluginSecretsNamespace holds the Secrets MapperPlugins may be
	// granted (see controller.Options.SecretsNamespace); empty for none.
	// It must differ from Namespace.
	PluginSecretsNamespace string
	// Listen is the address hosts connect to (default ":8443").
	Listen string
	// TLSCert and TLSKey are the operator's certificate files; when empty
	// a self-signed certificate is kept in Secret TLSSecret.
	TLSCert, TLSKey string
	// TLSSecret names the Secret of the self-signed certificate (default
	// "wapper-cloud-tls").
	TLSSecret string
	// TLSHosts are the names and addresses a generated certificate covers.
	TLSHosts []string
	// CAOut, when set, receives the serving certificate (PEM), for hosts'
	// --ca-file.
	CAOut string
	// ModuleCacheDir caches modules pulled through for hosts.
	ModuleCacheDir string
	// Fetch configures registry access for pull-through.
	Fetch fetch.Options
	// Status configures status write-back (Dynamic, Device and
	// UseDeviceStatus are filled in).
	Status status.Options
	// Hub configures the hub (Auth, Upstream and callbacks are filled in).
	Hub hub.Options
	// Workers is the number of reconcile workers: zero means
	// DefaultWorkers, a negative number is refused.
	Workers int
	// Replicas shares the nodes among replicas with per-node Leases and
	// a heartbeat Lease per replica, and elects a leader for rollouts
	// (see package cloud/replicas). Off, this
	// replica serves every node that connects and leads alone: run only
	// one then.
	Replicas bool
	// Identity names this replica in the Leases (default
	// replicas.Identity(): the host name and a random suffix).
	Identity string
	// LeaseDuration and LeaseRenew are the duration and renew interval
	// of the replica's heartbeat Lease and of the leader's Lease
	// (defaults replicas.DefaultLeaseDuration and
	// replicas.DefaultRenewInterval).
	LeaseDuration, LeaseRenew time.Duration
	// Console serves the fleet console (package cloud/console) at / on
	// Listen.
	Console bool
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
	// Ready, when set, is called with the listening address once the
	// server accepts hosts.
	Ready func(addr net.Addr)
}

// withDefaults fills in the defaults of cfg and checks it.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.TLSSecret == "" {
		cfg.TLSSecret = DefaultTLSSecret
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.PluginSecretsNamespace == cfg.Namespace {
		return cfg, fmt.Errorf("the plugin secrets namespace %q is the namespace of wapper-cloud's own Secrets (node tokens, TLS); plugins must not be granted those: use another namespace", cfg.Namespace)
	}
	switch {
	case cfg.Workers < 0:
		return cfg, fmt.Errorf("%d reconcile workers (--workers): want 1 or more", cfg.Workers)
	case cfg.Workers == 0:
		cfg.Workers = DefaultWorkers
	}
	if len(cfg.TLSHosts) == 0 {
		cfg.TLSHosts = []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil {
			cfg.TLSHosts = append(cfg.TLSHosts, h)
		}
	}
	if cfg.ModuleCacheDir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return cfg, fmt.Errorf("no module cache directory: set --module-cache: %w", err)
		}
		cfg.ModuleCacheDir = d + "/wapper-cloud/modules"
	}
	return cfg, nil
}

// Run serves until ctx ends, and returns once every component has
// stopped: nil after ctx ended, or the first component's failure.
func Run(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	log := cfg.Logger
	kc, err := kubernetes.NewForConfig(cfg.Rest)
	if err != nil {
		return err
	}
	kec, err := kubeedge.NewForConfig(cfg.Rest)
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(cfg.Rest)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var cert tls.Certificate
	var certPEM []byte
	if cfg.TLSCert != "" {
		if cert, err = tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return fmt.Errorf("load --tls-cert/--tls-key: %w", err)
		}
		certPEM, _ = os.ReadFile(cfg.TLSCert)
	} else if cert, certPEM, err = certs.FromSecret(ctx, kc, cfg.Namespace, cfg.TLSSecret, cfg.TLSHosts); err != nil {
		return err
	}
	if cfg.CAOut != "" {
		if err := os.WriteFile(cfg.CAOut, certPEM, 0o644); err != nil {
			return fmt.Errorf("write --ca-out: %w", err)
		}
	}

	auth := nodeauth.New(kc, cfg.Namespace, log)
	useDS, err := status.HasDeviceStatus(kc.Discovery())
	if err != nil {
		return err
	}
	if !useDS {
		log.Warn("wapper-cloud: the DeviceStatus CRD (KubeEdge 1.23) is not installed; writing twins to Device status, which keeps them only where the Device CRD defines status.twins (KubeEdge before 1.23); install deploy/crds to use DeviceStatus")
	}
	var ctl *controller.Controller
	sopts := cfg.Status
	sopts.Dynamic, sopts.UseDeviceStatus, sopts.Logger = dc, useDS, log
	sopts.Device = func(ns, name string) (types.UID, bool) {
		d, ok := ctl.Device(ns, name)
		if !ok {
			return "", false
		}
		return d.UID, true
	}
	sopts.Metrics = status.NewMetrics(reg)
	writer := status.New(sopts)

	var h *hub.Hub
	var nodes *replicas.Nodes
	var leader *replicas.Leader
	isLeader := func() bool { return true }
	if cfg.Replicas {
		if cfg.Identity == "" {
			cfg.Identity = replicas.Identity()
		}
		// The node Leases have a client of their own, with a rate limit
		// of their own (LeaseQPSFactor times the main client's): claims
		// at hello and releases must not wait behind status writes and
		// informers, nor starve them.
		lrc := rest.CopyConfig(cfg.Rest)
		lrc.RateLimiter = nil
		lrc.QPS, lrc.Burst = LeaseQPSFactor*lrc.QPS, LeaseQPSFactor*lrc.Burst
		lc, err := kubernetes.NewForConfig(lrc)
		if err != nil {
			return err
		}
		// The heartbeat and the leader election have a client (and a
		// rate limit, the main client's) of their own again: a storm
		// of hellos, which may fill the claims' rate limit for a while,
		// must not hold renewals back.
		brc := rest.CopyConfig(cfg.Rest)
		brc.RateLimiter = nil
		bc, err := kubernetes.NewForConfig(brc)
		if err != nil {
			return err
		}
		ropts := replicas.Options{Kube: lc, Beat: bc, Namespace: cfg.Namespace, Identity: cfg.Identity,
			LeaseDuration: cfg.LeaseDuration, RenewInterval: cfg.LeaseRenew, Logger: log, Metrics: replicas.NewMetrics(reg),
			OnLost: func(node string) { h.Drop(node) }}
		if nodes, err = replicas.NewNodes(ropts); err != nil {
			return fmt.Errorf("--lease-duration, --lease-renew: %w", err)
		}
		ropts.Metrics = nil // registered once, by NewNodes; the leader gauge below
		if leader, err = replicas.NewLeader(ropts); err != nil {
			return fmt.Errorf("--lease-duration, --lease-renew: %w", err)
		}
		replicas.BindLeader(reg, leader)
		isLeader = leader.IsLeader
	}

	hopts := cfg.Hub
	hopts.Auth, hopts.Upstream, hopts.Logger = auth, writer, log
	hopts.OnConnect = func(node string) { ctl.Enqueue(node) }
	hopts.Metrics = hub.NewMetrics(reg)
	if nodes != nil {
		hopts.Owner = nodes
	}
	h = hub.New(hopts)
	resolver := modules.NewResolver(cfg.ModuleCacheDir, cfg.Fetch, 0)
	ctl, err = controller.New(controller.Options{
		KubeEdge: kec, Dynamic: dc, Hub: h, Workers: cfg.Workers, Logger: log, Metrics: controller.NewMetrics(reg),
		Rollouts: writer, Digest: resolver.Digest, Kube: kc, Recorder: rollout.NewRecorder(log, reg),
		SecretsNamespace: cfg.PluginSecretsNamespace, Leader: isLeader,
	})
	if err != nil {
		return err
	}
	mods := modules.New(modules.Options{Auth: h, Plugin: ctl.Plugin, CacheDir: cfg.ModuleCacheDir, Fetch: cfg.Fetch, Logger: log, Registerer: reg})

	mux := http.NewServeMux()
	mux.Handle(linkproto.LinkPath, h)
	mux.Handle(linkproto.ModulesPath, mods)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.Console {
		console.New(console.Options{Links: h.Links, Inventory: ctl.Inventory, Reported: writer.Reported,
			Authorizer: console.NewCluster(kc), Logger: log}).Mount(mux)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ctl.HasSynced() {
			http.Error(w, "informers not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// The components run in one errgroup: the first to fail stops the
	// others, and Run returns its error once all have stopped. Shutdown
	// order, on ctx's end or a failure:
	//  1. the HTTPS server stops taking hosts, lets module downloads under
	//     way finish (5 s at most), and the hub closes its sessions, so no
	//     report arrives any more;
	//  2. then the controller, the status writer and node authentication
	//     stop together: their context (back) ends only when 1 is over.
	back, stopBack := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBack()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return auth.Run(back) })
	g.Go(func() error { return ctl.Run(back) })
	g.Go(func() error { return writer.Run(back) })
	if cfg.Replicas {
		leader.OnChange = func(bool) { ctl.LeadershipChanged() }
		// The heartbeat Lease is deleted (freeing every node held here)
		// last: once the hub has closed its sessions, so that no node is
		// served here after its lease goes.
		g.Go(func() error { return nodes.Run(back) })
		g.Go(func() error { return leader.Run(back) })
	}
	g.Go(func() error {
		defer stopBack()
		if err := auth.WaitSynced(gctx); err != nil {
			if gctx.Err() != nil && ctx.Err() != nil {
				return nil // stopped while starting
			}
			return err
		}
		drain := func() {}
		if nodes != nil {
			drain = nodes.Drain
		}
		return serveHosts(gctx, srv, ln, h, drain, log, func() {
			log.Info("wapper-cloud: serving", "addr", ln.Addr().String(), "namespace", cfg.Namespace, "deviceStatus", useDS, "workers", cfg.Workers,
				"replicas", cfg.Replicas, "identity", cfg.Identity)
			if cfg.Console {
				log.Info("wapper-cloud: fleet console at https://" + ln.Addr().String() + "/ (a Kubernetes token whose user may list mapperplugins)")
			}
			if cfg.Ready != nil {
				cfg.Ready(ln.Addr())
			}
		})
	})
	return g.Wait()
}

// serveHosts serves srv on ln until ctx ends (calling serving once it
// serves), then shuts it down, calls drain (replicas: no more claims, nor
// releases one by one) and closes the hub's sessions. It returns
// once the server has stopped: nil, or why it stopped serving by itself.
func serveHosts(ctx context.Context, srv *http.Server, ln net.Listener, h *hub.Hub, drain func(), log *slog.Logger, serving func()) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	serving()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serve hosts: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		log.Warn("wapper-cloud: requests still under way at shutdown were cut", "err", serr)
	}
	drain()
	h.Close()
	if cerr := srv.Close(); cerr != nil {
		log.Warn("wapper-cloud: close the listener", "err", cerr)
	}
	if err == nil {
		if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = fmt.Errorf("serve hosts: %w", serr)
		}
	}
	return err
}
