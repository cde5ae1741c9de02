package v1alpha1

import (
	"time"
)

// Defaults and bounds of Limits.
const (
	// DefaultMemoryMiB is the memory limit of a plugin that sets none.
	DefaultMemoryMiB int32 = 64
	// MaxMemoryMiB is the largest memory limit a plugin may ask for.
	MaxMemoryMiB int32 = 1024
	// DefaultCallTimeout is the per-call deadline of a plugin that sets none.
	DefaultCallTimeout = 5 * time.Second
	// MaxCallTimeout is the longest per-call deadline a plugin may ask for.
	MaxCallTimeout = 5 * time.Minute
	// DefaultInstances is the instance pool size of a plugin that sets none.
	DefaultInstances int32 = 2
	// MaxInstances is the largest instance pool a plugin may ask for.
	MaxInstances int32 = 64
)

// Default fills the unset (zero) limits with their defaults. It changes
// nothing else and is safe to call more than once.
func (p *MapperPlugin) Default() {
	p.Spec.Limits.Default()
}

// Default fills the zero fields of l with their defaults.
func (l *Limits) Default() {
	if l.MemoryMiB == 0 {
		l.MemoryMiB = DefaultMemoryMiB
	}
	if l.CallTimeout.Duration == 0 {
		l.CallTimeout.Duration = DefaultCallTimeout
	}
	if l.Instances == 0 {
		l.Instances = DefaultInstances
	}
}

// MemoryBytes returns the memory limit in bytes, with the default applied.
func (l Limits) MemoryBytes() uint64 {
	l.Default()
	return uint64(l.MemoryMiB) << 20
}

// MemoryPages returns the memory limit in 64 KiB WebAssembly pages, with
// the default applied.
func (l Limits) MemoryPages() uint32 {
	l.Default()
	return uint32(l.MemoryMiB) * 16
}
