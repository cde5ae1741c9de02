package store

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// BenchmarkReplaceObjects saves the objects of a source of 50,000 Devices
// given in random order (as a Manager's maps give them), in one
// transaction, as a host does when a manifest of that many devices loads.
func BenchmarkReplaceObjects(b *testing.B) {
	const n = 50000
	objs := make([]Object, n)
	body := []byte(`{"spec":{"deviceModelRef":{"name":"bench-model"},"properties":[` + strings.Repeat(`{"name":"p","collectCycle":1000},`, 4) + `{}]}}`)
	for i, k := range rand.Perm(n) {
		objs[i] = Object{Source: "manifests", Kind: "Device", Key: fmt.Sprintf("default/dev-%d", k), JSON: body}
	}
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for b.Loop() {
		rand.Shuffle(n, func(i, j int) { objs[i], objs[j] = objs[j], objs[i] })
		if err := s.ReplaceObjects("manifests", objs); err != nil {
			b.Fatal(err)
		}
	}
}
