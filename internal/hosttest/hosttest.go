// Package hosttest sets up wapper-host's device path for tests: a device
// manager with its state, engine and module cache in a temporary folder,
// manifests applied from YAML, MQTT brokers on loopback and clients that
// subscribe to them. Everything it starts is closed when the test ends.
package hosttest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/host/mqtt"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
)

// closeTimeout bounds the closing of a manager and its engine at the end
// of a test; it only keeps a broken build from hanging.
const closeTimeout = 10 * time.Second

// Manager returns a device manager that loads plugins from the folder
// pluginDir, with its state, compiled-code cache and module cache in a
// temporary folder. o carries the cycles and the rest; its Engine, Store,
// Logger and Modules are set here, and the engine's metrics go to
// o.Registerer with the manager's. The manager, its engine and its state
// are closed when the test ends, after the cleanups registered later (so
// consumers of the manager stop first).
func Manager(t testing.TB, log *slog.Logger, pluginDir string, o devices.Options) *devices.Manager {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(dir, "cache"), Logger: log, Metrics: runtime.NewMetrics(o.Registerer)})
	if err != nil {
		t.Fatal(err)
	}
	o.Engine, o.Store, o.Logger = eng, st, log
	o.Modules = devices.ModuleLoader{PluginDir: pluginDir, CacheDir: filepath.Join(dir, "modules")}
	mgr, err := devices.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := mgr.Close(ctx); err != nil {
			t.Errorf("hosttest: close device manager: %v", err)
		}
		if err := eng.Close(ctx); err != nil {
			t.Errorf("hosttest: close engine: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("hosttest: close state: %v", err)
		}
	})
	return mgr
}

// Apply loads the manifests in yml (Devices, DeviceModels and
// MapperPlugins, as a manifests folder holds them) into mgr as the source
// "manifests". A manifest problem fails the test.
func Apply(t testing.TB, mgr *devices.Manager, yml string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "devices.yaml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := manifest.Load(dir)
	if err != nil || len(set.Problems) > 0 {
		t.Fatalf("manifest: %v %+v", err, set.Problems)
	}
	if err := mgr.Apply(context.Background(), "manifests", devices.ResourceSet{Devices: set.Devices, Models: set.Models, Plugins: set.Plugins}); err != nil {
		t.Fatal(err)
	}
}

// Broker starts an MQTT broker on a free loopback port, closed when the
// test ends.
func Broker(t testing.TB) *mqtt.Broker {
	t.Helper()
	b, err := mqtt.Serve(mqtt.BrokerOptions{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Logf("hosttest: close broker: %v", err)
		}
	})
	return b
}

// clientSeq numbers the MQTT clients of a test binary, so their ids
// differ.
var clientSeq atomic.Int64

// connectTimeout bounds connecting and subscribing to a loopback broker;
// it only keeps a broken build from hanging.
const connectTimeout = time.Minute

// Subscribe connects an MQTT client (paho) to the broker at url
// ("tcp://host:port") and calls fn, on paho's goroutine, with every
// message matching filter. It subscribes at QoS 2, so the QoS of a message
// received is the QoS it was published with. The client disconnects when
// the test ends.
func Subscribe(t testing.TB, url, filter string, fn func(paho.Message)) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).
		SetClientID(fmt.Sprintf("hosttest-%d-%d", os.Getpid(), clientSeq.Add(1))).
		SetAutoReconnect(false).SetConnectTimeout(connectTimeout)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(connectTimeout) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(filter, 2, func(_ paho.Client, m paho.Message) { fn(m) })
	if !tok.WaitTimeout(connectTimeout) || tok.Error() != nil {
		t.Fatalf("subscribe to %s on %s: %v", filter, url, tok.Error())
	}
}
