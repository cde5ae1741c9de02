package runtime_test

import (
	"context"
	"testing"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/internal/testenv"
)

func BenchmarkRead(b *testing.B) {
	e := newEnvB(b)
	p := e.load("bench", testenv.TestPlugin(b, "bench"), nil)
	ctx := context.Background()
	if err := p.AddDevice(ctx, abi.Device{ID: 1, Name: "b", Properties: []abi.Property{{Handle: 0, Name: "noop", Type: "INT", AccessMode: "ReadOnly"}, {Handle: 1, Name: "noop2", Type: "INT", AccessMode: "ReadOnly"}}}); err != nil {
		b.Fatal(err)
	}
	b.Run("ping", func(b *testing.B) {
		for range b.N {
			if err := p.Ping(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("batch2", func(b *testing.B) {
		for range b.N {
			if _, err := p.ReadBatch(ctx, 1, []uint32{0, 1}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read", func(b *testing.B) {
		for range b.N {
			if _, err := p.Read(ctx, 1, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
