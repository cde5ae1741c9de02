// Command wapper-cloud is wapper's cloud side: a Kubernetes controller that
// delivers each edge node's Devices, DeviceModels and MapperPlugins to its
// wapper-host over an authenticated websocket, serves plugin modules to
// hosts that cannot reach the registry, and writes reported twins and
// plugin states back into the cluster.
//
//	wapper-cloud [--kubeconfig F] [--listen :8443] [--namespace wapper-system] ...
//	wapper-cloud token [--kubeconfig F] [--namespace NS] NODE
//
// The token subcommand prints node NODE's bearer token, creating its
// Secret first when needed; give it to the host with --token-file.
//
// The command line follows internal/cli's conventions: --help exits 0, a
// bad flag exits 2.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/cloud/nodeauth"
	"wapper.dev/wapper/cloud/replicas"
	"wapper.dev/wapper/cloud/server"
	"wapper.dev/wapper/cloud/status"
	"wapper.dev/wapper/internal/cli"
	"wapper.dev/wapper/registry/client"
	"wapper.dev/wapper/registry/fetch"
)

// defaultKubeAPIQPS is --kube-api-qps: the client's requests per second
// towards the API server (the burst is twice that).
const defaultKubeAPIQPS = 100

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, newCommand(server.Run), os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// options are the flags of the serving command beyond server.Config.
type options struct {
	cfg        server.Config
	kubeconfig string
	tlsHosts   string
	registry   client.Options
	statusQPS  float64
	apiQPS     float64
	log        cli.Log
}

// newCommand returns the wapper-cloud command tree; serve runs the
// server (server.Run, or a stand-in in tests).
func newCommand(serve func(context.Context, server.Config) error) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "wapper-cloud",
		Short: "Deliver Devices, DeviceModels and MapperPlugins to wapper-host edge nodes",
		Long: `wapper-cloud watches Device, DeviceModel and MapperPlugin resources in
Kubernetes and delivers each edge node's share to its wapper-host over an
authenticated websocket (TLS), serves plugin modules to hosts that cannot
reach the registry, and writes reported twins and plugin states back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config()
			if err != nil {
				return err
			}
			slog.SetDefault(cfg.Logger)
			return serve(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then in-cluster, then ~/.kube/config)")
	f.StringVar(&o.tlsHosts, "tls-hosts", "", "comma-separated names and addresses for the generated certificate (default localhost, loopback and the host name)")
	o.registry.FlagPrefix = "registry-"
	f.BoolVar(&o.registry.PlainHTTP, "registry-plain-http", false, "pull modules over plain HTTP (loopback registries only)")
	f.BoolVar(&o.registry.Insecure, "registry-insecure", false, "skip registry TLS verification")
	f.StringVar(&o.registry.CAFile, "registry-ca-file", "", "PEM certificates to trust for the registry")
	f.Float64Var(&o.statusQPS, "status-qps", status.DefaultQPS, "status writes per second to the API server")
	f.IntVar(&o.cfg.Status.Burst, "status-burst", status.DefaultBurst, "status write burst")
	f.IntVar(&o.cfg.Status.Workers, "status-workers", status.DefaultWorkers, "concurrent status writers")
	f.DurationVar(&o.cfg.Status.FlushInterval, "status-flush", status.DefaultFlushInterval, "how long reports for one object gather before a write")
	f.IntVar(&o.cfg.Hub.Window, "window", hub.DefaultWindow, "unacknowledged batches per host before the hub waits (backpressure)")
	f.IntVar(&o.cfg.Hub.BatchSize, "batch", hub.DefaultBatchSize, "most objects in one batch")
	f.BoolVar(&o.cfg.Hub.Compression, "link-compression", false, "offer websocket permessage-deflate to hosts; used with those that ask for it too (wapper-host --cloud-compression)")
	f.Float64Var(&o.apiQPS, "kube-api-qps", defaultKubeAPIQPS, "client QPS towards the API server (the burst is twice that)")
	cli.AddLogFlags(f, &o.log)
	f.StringVar(&o.cfg.Listen, "listen", server.DefaultListen, "address hosts connect to (TLS)")
	f.StringVar(&o.cfg.Namespace, "namespace", server.DefaultNamespace, "namespace of the node token Secrets and the TLS Secret")
	f.StringVar(&o.cfg.PluginSecretsNamespace, "plugin-secrets-namespace", "", "namespace of the Secrets MapperPlugins may be granted (grants.secrets, grants.tls), sent to the nodes that run those plugins; empty: none (needs secrets get, list and watch there)")
	f.StringVar(&o.cfg.TLSCert, "tls-cert", "", "serving certificate (PEM); default: a self-signed one kept in --tls-secret")
	f.StringVar(&o.cfg.TLSKey, "tls-key", "", "serving key (PEM)")
	f.StringVar(&o.cfg.TLSSecret, "tls-secret", server.DefaultTLSSecret, "Secret that keeps the generated certificate")
	f.StringVar(&o.cfg.CAOut, "ca-out", "", "write the serving certificate here, for hosts' --ca-file")
	f.StringVar(&o.cfg.ModuleCacheDir, "module-cache", "", "module cache for pull-through (default: user cache dir)")
	f.IntVar(&o.cfg.Workers, "workers", server.DefaultWorkers, "reconcile workers (1 or more)")
	f.BoolVar(&o.cfg.Replicas, "replicas", true, "share the nodes among wapper-cloud replicas: each node is served by the replica its Lease (coordination.k8s.io) in --namespace names, while that replica's heartbeat Lease is renewed, and one elected leader plans rollouts (needs leases get, create, update and delete there); false: this replica serves every node and leads alone (run one replica only)")
	f.StringVar(&o.cfg.Identity, "identity", "", "this replica's name in the Leases (default: the host name, a pod's name in Kubernetes, and a random suffix)")
	f.DurationVar(&o.cfg.LeaseDuration, "lease-duration", replicas.DefaultLeaseDuration, "how long a replica's nodes (or the leadership) stay with it once it stops renewing its heartbeat Lease: the longest a dead replica's hosts wait, before their reconnect backoff (whole seconds)")
	f.DurationVar(&o.cfg.LeaseRenew, "lease-renew", replicas.DefaultRenewInterval, "how often a replica renews its heartbeat Lease (and the leader its Lease); one write each, whatever the number of nodes (at most a third of --lease-duration)")
	f.BoolVar(&o.cfg.Console, "console", true, "serve the fleet console at / on --listen, to Kubernetes users allowed to list mapperplugins")
	cmd.AddCommand(tokenCommand())
	return cmd
}

// config checks the flags and returns the server's configuration.
func (o *options) config() (server.Config, error) {
	cfg := o.cfg
	for _, c := range []struct {
		name string
		v    float64
	}{
		{"workers", float64(cfg.Workers)}, {"status-workers", float64(cfg.Status.Workers)}, {"status-burst", float64(cfg.Status.Burst)},
		{"window", float64(cfg.Hub.Window)}, {"batch", float64(cfg.Hub.BatchSize)},
	} {
		if c.v < 1 {
			return cfg, cli.Usagef("--%s %v: want 1 or more", c.name, c.v)
		}
	}
	if o.statusQPS <= 0 || o.apiQPS <= 0 {
		return cfg, cli.Usagef("--status-qps %v, --kube-api-qps %v: want more than 0", o.statusQPS, o.apiQPS)
	}
	if cfg.Status.FlushInterval <= 0 {
		return cfg, cli.Usagef("--status-flush %s: want a positive duration", cfg.Status.FlushInterval)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return cfg, cli.Usagef("--tls-cert and --tls-key go together")
	}
	log := o.log.Logger(os.Stderr)
	rc, err := restConfig(o.kubeconfig)
	if err != nil {
		return cfg, err
	}
	rc.QPS, rc.Burst = float32(o.apiQPS), int(2*o.apiQPS)
	cfg.Rest = rc
	cfg.Logger = log
	if o.tlsHosts != "" {
		cfg.TLSHosts = strings.Split(o.tlsHosts, ",")
	}
	cfg.Fetch = fetch.Options{Client: o.registry, Logger: log}
	cfg.Status.QPS = float32(o.statusQPS)
	return cfg, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		kubeconfig = os.Getenv("KUBECONFIG")
	}
	if kubeconfig == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no Kubernetes configuration (pass --kubeconfig or run in a cluster): %w", err)
	}
	return cfg, nil
}

// tokenCommand returns `wapper-cloud token NODE`.
func tokenCommand() *cobra.Command {
	var kubeconfig, ns string
	cmd := &cobra.Command{
		Use:   "token NODE",
		Short: "Print node NODE's bearer token, creating its Secret when needed",
		Long: `Print node NODE's bearer token, creating its Secret when needed.
Give the token to the node's wapper-host with --token-file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return fmt.Errorf("kubernetes client: %w", err)
			}
			tok, err := nodeauth.Ensure(cmd.Context(), cs, ns, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then in-cluster, then ~/.kube/config)")
	cmd.Flags().StringVar(&ns, "namespace", server.DefaultNamespace, "namespace of the token Secrets")
	return cmd
}
