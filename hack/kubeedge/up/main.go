// Command up runs a local KubeEdge for trying wapper-host as its mapper: a
// kube-apiserver with etcd, KubeEdge's CRDs, cloudcore, and edgecore with
// one edge node, all on loopback, until interrupted. It prints the
// kubeconfig, edgecore's DMI socket and its MQTT broker, the values
// docs/kubeedge.md's walkthrough uses. `make kubeedge-up` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/internal/kubeedgetest"
)

func main() {
	node := flag.String("node", "edge-0", "edge node name")
	flag.Parse()
	if err := run(*node); err != nil {
		slog.Error("kubeedge-up", "err", err)
		os.Exit(1)
	}
}

func run(node string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	crds, err := kubeedgetest.CRDs("")
	if err != nil {
		return err
	}
	cluster, err := k8stest.Start(ctx, k8stest.Options{CRDs: crds})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	ke, err := kubeedgetest.Start(ctx, kubeedgetest.Options{Cluster: cluster, Node: node})
	if err != nil {
		return err
	}
	defer ke.Stop()
	fmt.Printf(`KubeEdge is up, edge node %s (Ctrl-C stops it and removes everything). In another shell:
  export KUBECONFIG=%s DMI_SOCKET=%s EDGECORE_MQTT=%s
Logs: %s/cloud/cloudcore.log, %s
`, ke.Node, cluster.Kubeconfig, ke.DMISocket(), ke.MQTTURL(), ke.Dir, ke.EdgecoreLog())
	<-ctx.Done()
	return nil
}
