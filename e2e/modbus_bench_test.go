package e2e

// Throughput of the wasm Modbus plugin through the host runtime against a
// native Go Modbus client (github.com/simonvetter/modbus), reading the same
// block of holding registers from the same local server. `make bench` runs
// TestModbusThroughput with WAPPER_BENCH=1 and prints reads/s and the ratio;
// the Benchmark functions give the same numbers to go test -bench.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/internal/testenv"
)

// benchBlock is the block read on every iteration: 16 holding registers.
const benchBlock = 16

func benchServer(b testing.TB) int {
	port := freePort(b)
	regs := &regMap{}
	for i := range benchBlock {
		regs.holding[i] = uint16(i * 3)
	}
	startModbusServer(b, port, regs)
	return port
}

func benchModbusWasm(b *testing.B, port int) {
	p := loadIOPlugin(b, "modbus", v1alpha1.Grants{Network: []string{fmt.Sprintf("tcp://127.0.0.1:%d", port)}}, nil)
	ctx := context.Background()
	dev := tcpDevice(1, port, 2000,
		prop(0, "block", "BYTES", "ReadOnly", fmt.Sprintf(`{"register":"HoldingRegister","offset":0,"limit":%d}`, benchBlock)))
	if err := p.AddDevice(ctx, dev); err != nil {
		b.Fatal(err)
	}
	if v, err := p.Read(ctx, 1, 0); err != nil || len(v.Bytes()) != 2*benchBlock {
		b.Fatalf("warm-up read: %v, %v", v, err)
	}
	b.ResetTimer()
	for b.Loop() {
		v, err := p.Read(ctx, 1, 0)
		if err != nil {
			b.Fatal(err)
		}
		sink = v
	}
}

func benchModbusNative(b *testing.B, port int) {
	c, err := modbus.NewClient(&modbus.ClientConfiguration{URL: fmt.Sprintf("tcp://127.0.0.1:%d", port), Timeout: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Open(); err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ResetTimer()
	for b.Loop() {
		regs, err := c.ReadRegisters(0, benchBlock, modbus.HOLDING_REGISTER)
		if err != nil {
			b.Fatal(err)
		}
		sink = regs
	}
}

var sink any

func BenchmarkModbusReadWasm(b *testing.B) { benchModbusWasm(b, benchServer(b)) }

func BenchmarkModbusReadNative(b *testing.B) { benchModbusNative(b, benchServer(b)) }

// TestModbusThroughput prints the side-by-side numbers for make bench.
func TestModbusThroughput(t *testing.T) {
	testenv.Opt(t, "WAPPER_BENCH", "a benchmark that prints wasm and native reads/s for make bench (mk/io.mk); go test -bench 'ModbusRead' gives the same numbers")
	port := benchServer(t)
	// Interleave the two sides and keep each side's best of three, so
	// that a busy moment on the machine does not decide the ratio.
	var wasm, native float64
	for range 3 {
		w := testing.Benchmark(func(b *testing.B) { benchModbusWasm(b, port) })
		n := testing.Benchmark(func(b *testing.B) { benchModbusNative(b, port) })
		wasm = max(wasm, float64(w.N)/w.T.Seconds())
		native = max(native, float64(n.N)/n.T.Seconds())
	}
	if wasm == 0 || native == 0 {
		t.Fatal("a benchmark failed")
	}
	fmt.Printf("\nModbus TCP: read %d holding registers from the same local server\n", benchBlock)
	fmt.Printf("%-44s %12.0f reads/s\n", "wasm plugin through the host runtime", wasm)
	fmt.Printf("%-44s %12.0f reads/s\n", "native Go client (simonvetter/modbus)", native)
	fmt.Printf("%-44s %12.0f%%  (target >= 80%%)\n", "wasm / native", 100*wasm/native)
}
