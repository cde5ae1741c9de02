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

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/internal/testenv"
)

// benchBlock is the block read on every iteration: 16 holding registers.
const benchBlock = 16

// benchRegs are the registers the benchmark servers serve.
func benchRegs() *regMap {
	regs := &regMap{}
	for i := range benchBlock {
		regs.holding[i] = uint16(i * 3)
	}
	return regs
}

func benchServer(b testing.TB) int {
	port := freePort(b)
	startModbusServer(b, port, benchRegs())
	return port
}

func benchModbusWasm(b *testing.B, port int) {
	p := loadIOPlugin(b, "modbus", v1alpha1.Grants{Network: []string{fmt.Sprintf("tcp://127.0.0.1:%d", port)}}, nil)
	benchRead(b, p, tcpDevice(1, port, 2000,
		prop(0, "block", "BYTES", "ReadOnly", fmt.Sprintf(`{"register":"HoldingRegister","offset":0,"limit":%d}`, benchBlock))))
}

// benchRead adds dev to p and reads its first property in a loop.
func benchRead(b *testing.B, p *ioPlugin, dev abi.Device) {
	ctx := context.Background()
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

// TestModbusThroughput prints the side-by-side numbers for make bench:
// Modbus TCP, then Modbus/TCP Security (TLS made by the host for the
// plugin, by crypto/tls for the native client).
func TestModbusThroughput(t *testing.T) {
	testenv.Opt(t, "WAPPER_BENCH", "a benchmark that prints wasm and native reads/s for make bench (mk/io.mk); go test -bench 'ModbusRead|ModbusTLSRead' gives the same numbers")
	port := benchServer(t)
	printThroughput(t, "Modbus TCP", "", func(b *testing.B) { benchModbusWasm(b, port) }, func(b *testing.B) { benchModbusNative(b, port) })
	m := startModbusTLS(t, benchRegs())
	printThroughput(t, "Modbus/TCP Security (TLS 1.3, client certificate)", " over crypto/tls",
		func(b *testing.B) { benchModbusTLSWasm(b, m) }, func(b *testing.B) { benchModbusTLSNative(b, m) })
}

// printThroughput runs the wasm and native benchmarks, interleaved three
// times, each side's best kept so that a busy moment on the machine does
// not decide the ratio, and prints both and the ratio.
func printThroughput(t *testing.T, what, nativeHow string, wasmB, nativeB func(*testing.B)) {
	var wasm, native float64
	for range 3 {
		w := testing.Benchmark(wasmB)
		n := testing.Benchmark(nativeB)
		wasm = max(wasm, float64(w.N)/w.T.Seconds())
		native = max(native, float64(n.N)/n.T.Seconds())
	}
	if wasm == 0 || native == 0 {
		t.Fatal("a benchmark failed")
	}
	fmt.Printf("\n%s: read %d holding registers from the same local server\n", what, benchBlock)
	fmt.Printf("%-52s %12.0f reads/s\n", "wasm plugin through the host runtime", wasm)
	fmt.Printf("%-52s %12.0f reads/s\n", "native Go client (simonvetter/modbus)"+nativeHow, native)
	fmt.Printf("%-52s %12.0f%%  (target >= 80%%)\n", "wasm / native", 100*wasm/native)
}
