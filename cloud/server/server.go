// Package server assembles wapper-cloud: the controller, the hub, the
// status writer, node authentication and the module endpoint, behind one
// TLS listener. cmd/wapper-cloud is a thin flag layer over Run.
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"wapper.dev/wapper/cloud/certs"
	"wapper.dev/wapper/cloud/controller"
	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/linkproto"
	"wapper.dev/wapper/cloud/modules"
	"wapper.dev/wapper/cloud/nodeauth"
	"wapper.dev/wapper/cloud/status"
	"wapper.dev/wapper/registry/fetch"
)

// Config configures Run.
type Config struct {
	// Rest reaches the API server.
	Rest *rest.Config
	// Namespace holds the node token Secrets and the TLS Secret.
	Namespace string
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
	// Workers is the number of reconcile workers (default 4).
	Workers int
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
	// Ready, when set, is called with the listening address once the
	// server accepts hosts.
	Ready func(addr net.Addr)
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Listen == "" {
		cfg.Listen = ":8443"
	}
	if cfg.TLSSecret == "" {
		cfg.TLSSecret = "wapper-cloud-tls"
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "wapper-system"
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
			return fmt.Errorf("no module cache directory: set --module-cache: %w", err)
		}
		cfg.ModuleCacheDir = d + "/wapper-cloud/modules"
	}
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
	if err := auth.Start(ctx); err != nil {
		return err
	}
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

	hopts := cfg.Hub
	hopts.Auth, hopts.Upstream, hopts.Logger = auth, writer, log
	hopts.OnConnect = func(node string) { ctl.Enqueue(node) }
	hopts.Metrics = hub.NewMetrics(reg)
	h := hub.New(hopts)
	ctl, err = controller.New(controller.Options{KubeEdge: kec, Dynamic: dc, Hub: h, Logger: log, Metrics: controller.NewMetrics(reg)})
	if err != nil {
		return err
	}
	mods := modules.New(modules.Options{Auth: h, Plugin: ctl.Plugin, CacheDir: cfg.ModuleCacheDir, Fetch: cfg.Fetch, Logger: log, Registerer: reg})

	mux := http.NewServeMux()
	mux.Handle(linkproto.LinkPath, h)
	mux.Handle(linkproto.ModulesPath, mods)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	go func() { errc <- ctl.Run(ctx, max(cfg.Workers, 4)) }()
	go func() { writer.Run(ctx); errc <- nil }()
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info("wapper-cloud: serving", "addr", ln.Addr().String(), "namespace", cfg.Namespace, "deviceStatus", useDS)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	h.Close()
	_ = srv.Close()
	return err
}
