//go:build !linux

package runtime

import "context"

// withLinearMemory leaves wazero's own linear memory in place: the
// mmap-backed one is for Linux only.
func withLinearMemory(ctx context.Context) context.Context { return ctx }
