package e2e

// Helpers for the Modbus and GPIO plugin tests: a Modbus TCP server
// (github.com/simonvetter/modbus) with an in-memory register map, and a
// plugin loaded into the host runtime with grants.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/simonvetter/modbus"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/internal/testproc"
)

// regMap is the server's memory: 1000 of each table. Addresses from 1000
// up answer "illegal data address".
type regMap struct {
	mu       sync.Mutex
	coils    [1000]bool
	discrete [1000]bool
	holding  [1000]uint16
	input    [1000]uint16
	// reads records every holding register read as [addr, quantity].
	reads [][2]uint16
}

func (m *regMap) check(addr, qty uint16) error {
	if int(addr)+int(qty) > 1000 {
		return modbus.ErrIllegalDataAddress
	}
	return nil
}

func (m *regMap) HandleCoils(r *modbus.CoilsRequest) ([]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(r.Addr, r.Quantity); err != nil {
		return nil, err
	}
	if r.IsWrite {
		copy(m.coils[r.Addr:], r.Args)
		return nil, nil
	}
	return append([]bool(nil), m.coils[r.Addr:r.Addr+r.Quantity]...), nil
}

func (m *regMap) HandleDiscreteInputs(r *modbus.DiscreteInputsRequest) ([]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(r.Addr, r.Quantity); err != nil {
		return nil, err
	}
	return append([]bool(nil), m.discrete[r.Addr:r.Addr+r.Quantity]...), nil
}

func (m *regMap) HandleHoldingRegisters(r *modbus.HoldingRegistersRequest) ([]uint16, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(r.Addr, r.Quantity); err != nil {
		return nil, err
	}
	if r.IsWrite {
		copy(m.holding[r.Addr:], r.Args)
		return nil, nil
	}
	m.reads = append(m.reads, [2]uint16{r.Addr, r.Quantity})
	return append([]uint16(nil), m.holding[r.Addr:r.Addr+r.Quantity]...), nil
}

func (m *regMap) HandleInputRegisters(r *modbus.InputRegistersRequest) ([]uint16, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(r.Addr, r.Quantity); err != nil {
		return nil, err
	}
	return append([]uint16(nil), m.input[r.Addr:r.Addr+r.Quantity]...), nil
}

func (m *regMap) holdingReads() [][2]uint16 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][2]uint16(nil), m.reads...)
}

// freePort returns a loopback TCP port below the ephemeral range that was
// free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ports, err := testproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// startModbusServer serves m on 127.0.0.1:port; stop it with the returned
// function (also run at cleanup).
func startModbusServer(t testing.TB, port int, m *regMap) (stop func()) {
	t.Helper()
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{
		URL: fmt.Sprintf("tcp://127.0.0.1:%d", port), Timeout: time.Minute, MaxClients: 16,
	}, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("start Modbus server: %v", err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { srv.Stop() }) }
	t.Cleanup(stop)
	return stop
}

// ioPlugin is a plugin loaded for the device I/O tests, with its log and
// metrics.
type ioPlugin struct {
	*runtime.Plugin
	logs    *syncLog
	metrics *runtime.Metrics
	reads   *readings
}

// syncLog is a log sink safe for concurrent writers.
type syncLog struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// denials returns the grant-denial counter of a plugin for a kind.
func (p *ioPlugin) denials(kind string) float64 {
	var m dto.Metric
	if err := p.metrics.Denials.WithLabelValues(p.Name(), kind).Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

var ioCache struct {
	sync.Once
	dir string
	err error
}

// ioCacheDir is a compilation cache shared by the device I/O tests, so that
// each plugin compiles once per run.
func ioCacheDir(t testing.TB) string {
	ioCache.Do(func() { ioCache.dir, ioCache.err = os.MkdirTemp("", "wapper-e2e-io-cache") })
	if ioCache.err != nil {
		t.Fatal(ioCache.err)
	}
	return ioCache.dir
}

// loadIOPlugin loads bin/plugins/NAME.wasm with grants.
func loadIOPlugin(t testing.TB, name string, grants v1alpha1.Grants, mod func(*runtime.Config)) *ioPlugin {
	t.Helper()
	wasm, err := os.ReadFile(testenv.Plugin(t, name))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncLog{}
	metrics := runtime.NewMetrics(prometheus.NewRegistry())
	eng, err := runtime.NewEngine(runtime.EngineOptions{
		CacheDir: ioCacheDir(t),
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:  metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	rd := &readings{}
	cfg := runtime.Config{Name: name, Wasm: wasm, Report: rd.add}
	if err := runtime.WithGrants(&cfg, grants.Set()); err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := eng.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close(context.Background())
		eng.Close(context.Background())
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	return &ioPlugin{Plugin: p, logs: logs, metrics: metrics, reads: rd}
}

// eventually retries fn until it succeeds or a generous deadline passes.
func eventually(t testing.TB, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 30 s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
