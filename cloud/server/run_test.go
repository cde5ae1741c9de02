package server_test

import (
	"context"
	"net"
	"os"
	"testing"

	"wapper.dev/wapper/cloud/server"
	"wapper.dev/wapper/internal/k8stest"
)

func TestMain(m *testing.M) { os.Exit(k8stest.Run(m)) }

// TestRunStopsClean: Run serves against a real API server, and once its
// context ends it returns nil, after its components have stopped (the
// listener is closed by then).
func TestRunStopsClean(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.Namespace(t)
	ready := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Config{Rest: env.Config(), Namespace: ns, Listen: "127.0.0.1:0",
			ModuleCacheDir: t.TempDir(), Workers: 1, Ready: func(a net.Addr) { ready <- a }})
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("Run returned before serving: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after its context ended: %v, want nil", err)
	}
	if c, err := net.Dial("tcp", addr.String()); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Run returned", addr)
	}
}

// TestRunRefusesNegativeWorkers: a negative number of workers is refused
// before anything starts.
func TestRunRefusesNegativeWorkers(t *testing.T) {
	if err := server.Run(context.Background(), server.Config{Workers: -1}); err == nil {
		t.Fatal("Workers -1 accepted")
	}
}
