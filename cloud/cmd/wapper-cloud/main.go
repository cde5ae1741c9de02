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
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"wapper.dev/wapper/cloud/nodeauth"
	"wapper.dev/wapper/cloud/server"
	"wapper.dev/wapper/registry/client"
	"wapper.dev/wapper/registry/fetch"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "token" {
		err = token(ctx, os.Args[2:])
	} else {
		err = serve(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wapper-cloud:", err)
		os.Exit(1)
	}
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

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wapper-cloud", flag.ContinueOnError)
	var (
		cfg        server.Config
		kubeconfig = fs.String("kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then in-cluster, then ~/.kube/config)")
		hosts      = fs.String("tls-hosts", "", "comma-separated names and addresses for the generated certificate (default localhost, loopback and the host name)")
		plainHTTP  = fs.Bool("registry-plain-http", false, "pull modules over plain HTTP (loopback registries only)")
		insecure   = fs.Bool("registry-insecure", false, "skip registry TLS verification")
		regCA      = fs.String("registry-ca-file", "", "PEM certificates to trust for the registry")
		qps        = fs.Float64("status-qps", 50, "status writes per second to the API server")
		burst      = fs.Int("status-burst", 100, "status write burst")
		sworkers   = fs.Int("status-workers", 16, "concurrent status writers")
		flush      = fs.Duration("status-flush", time.Second, "how long reports for one object gather before a write")
		window     = fs.Int("window", 4, "unacknowledged batches per host before the hub waits (backpressure)")
		batch      = fs.Int("batch", 256, "most objects in one batch")
		apiQPS     = fs.Float64("kube-api-qps", 100, "client QPS towards the API server")
		level      = fs.String("log-level", "info", "debug, info, warn or error")
	)
	fs.StringVar(&cfg.Listen, "listen", ":8443", "address hosts connect to (TLS)")
	fs.StringVar(&cfg.Namespace, "namespace", "wapper-system", "namespace of the node token Secrets and the TLS Secret")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "serving certificate (PEM); default: a self-signed one kept in --tls-secret")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "serving key (PEM)")
	fs.StringVar(&cfg.TLSSecret, "tls-secret", "wapper-cloud-tls", "Secret that keeps the generated certificate")
	fs.StringVar(&cfg.CAOut, "ca-out", "", "write the serving certificate here, for hosts' --ca-file")
	fs.StringVar(&cfg.ModuleCacheDir, "module-cache", "", "module cache for pull-through (default: user cache dir)")
	fs.IntVar(&cfg.Workers, "workers", 4, "reconcile workers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)
	rc, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = float32(*apiQPS), int(2**apiQPS)
	cfg.Rest = rc
	cfg.Logger = log
	if *hosts != "" {
		cfg.TLSHosts = strings.Split(*hosts, ",")
	}
	cfg.Fetch = fetch.Options{Client: client.Options{PlainHTTP: *plainHTTP, Insecure: *insecure, CAFile: *regCA, FlagPrefix: "registry-"}}
	cfg.Status.QPS, cfg.Status.Burst, cfg.Status.FlushInterval, cfg.Status.Workers = float32(*qps), *burst, *flush, *sworkers
	cfg.Hub.Window, cfg.Hub.BatchSize = *window, *batch
	return server.Run(ctx, cfg)
}

func token(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wapper-cloud token", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file")
	ns := fs.String("namespace", "wapper-system", "namespace of the token Secrets")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: wapper-cloud token [--kubeconfig F] [--namespace NS] NODE")
	}
	rc, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	tok, err := nodeauth.Ensure(ctx, cs, *ns, fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
