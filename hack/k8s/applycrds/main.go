// Command applycrds installs the CRDs in deploy/crds into the cluster that
// $KUBECONFIG (or --kubeconfig) names, and waits until they are served.
// `make k8s-up` runs it; kubectl apply -f deploy/crds/ does the same job.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"wapper.dev/wapper/deploy/crds"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file of the target cluster")
	timeout := flag.Duration("timeout", time.Minute, "how long to wait for the CRDs to be established")
	flag.Parse()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		slog.Error("load kubeconfig; set --kubeconfig or $KUBECONFIG", "err", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := crds.Install(ctx, cfg); err != nil {
		slog.Error("install CRDs", "err", err)
		os.Exit(1)
	}
	slog.Info("CRDs installed", "host", cfg.Host)
}
