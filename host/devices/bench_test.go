package devices_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/kv"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

// BenchmarkVirtualRead measures the plugin side of a reading: the virtual
// plugin through the runtime, many devices read in turn (as the manager
// does), with one batch call of two properties or one call per property.
// It shows why the manager picks the read mode per plugin (readChooser):
// with the Go SDK's default batch (a loop over Read) a batch costs several
// single reads.
func BenchmarkVirtualRead(b *testing.B) {
	wasm, err := os.ReadFile(testenv.Plugin(b, "virtual"))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close(context.Background())
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, kind := range []string{"sine", "counter", "random"} {
		store, err := kv.Open(db, "virtual-"+kind, 0)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		p, err := eng.Load(ctx, runtime.Config{Name: "virtual-" + kind, Wasm: wasm, KV: store, Instances: 1})
		if err != nil {
			b.Fatal(err)
		}
		const n = 1000
		for i := range n {
			vis := json.RawMessage(fmt.Sprintf(`{"kind":%q,"periodMs":10000}`, kind))
			err := p.AddDevice(ctx, abi.Device{ID: uint32(i + 1), Namespace: "default", Name: fmt.Sprint("d", i), Properties: []abi.Property{
				{Handle: 1, Name: "a", Type: "DOUBLE", AccessMode: "ReadOnly", Visitor: vis},
				{Handle: 2, Name: "b", Type: "DOUBLE", AccessMode: "ReadOnly", Visitor: vis}}})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.Run(kind+"/batch", func(b *testing.B) {
			for i := range b.N {
				if _, err := p.ReadBatch(ctx, uint32(i%n+1), []uint32{1, 2}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(kind+"/single", func(b *testing.B) {
			for i := range b.N {
				if _, err := p.Read(ctx, uint32(i%n+1), uint32(i%2+1)); err != nil {
					b.Fatal(err)
				}
			}
		})
		p.Close(ctx)
	}
}
