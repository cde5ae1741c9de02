package v1alpha1

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
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
	// DefaultMaxUnavailable is the wave size of a rollout that sets none.
	DefaultMaxUnavailable = 1
	// DefaultProgressDeadlineSeconds is the progress deadline of a
	// rollout that sets none.
	DefaultProgressDeadlineSeconds int32 = 600
)

// Default fills the unset (zero) limits with their defaults. It changes
// nothing else and is safe to call more than once.
func (p *MapperPlugin) Default() {
	p.Spec.Limits.Default()
	p.Spec.Rollout.Default()
	p.Spec.Upgrade.Default()
}

// Default sets an unset MaxUnavailable to DefaultMaxUnavailable and an
// unset ProgressDeadlineSeconds to DefaultProgressDeadlineSeconds.
func (r *Rollout) Default() {
	if r.MaxUnavailable == nil {
		v := intstr.FromInt32(DefaultMaxUnavailable)
		r.MaxUnavailable = &v
	}
	if r.ProgressDeadlineSeconds == 0 {
		r.ProgressDeadlineSeconds = DefaultProgressDeadlineSeconds
	}
}

// ProgressDeadline returns how long a wave may take:
// ProgressDeadlineSeconds, or DefaultProgressDeadlineSeconds when it is
// not above zero.
func (r Rollout) ProgressDeadline() time.Duration {
	s := r.ProgressDeadlineSeconds
	if s <= 0 {
		s = DefaultProgressDeadlineSeconds
	}
	return time.Duration(s) * time.Second
}

// WaveSize returns how many of nodes one wave moves: MaxUnavailable as a
// count, or as a percentage of nodes rounded up; at least 1 (when nodes is
// above 0) and at most nodes. An invalid MaxUnavailable is an error.
func (r Rollout) WaveSize(nodes int) (int, error) {
	r.Default()
	if nodes <= 0 {
		return 0, nil
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(r.MaxUnavailable, nodes, true)
	if err != nil {
		return 0, fmt.Errorf("rollout maxUnavailable %s: %w", r.MaxUnavailable, err)
	}
	return min(max(n, 1), nodes), nil
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

// DefaultCanaryPercent is the canary share of a plugin that sets none
// (see Upgrade.CanaryPercent).
const DefaultCanaryPercent int32 = 10

// Default fills the unset fields of u: strategy Hot, canary share
// DefaultCanaryPercent.
func (u *Upgrade) Default() {
	if u.Strategy == "" {
		u.Strategy = UpgradeHot
	}
	if u.CanaryPercent == nil {
		c := DefaultCanaryPercent
		u.CanaryPercent = &c
	}
}

// Canary returns how many of n devices move first in a hot upgrade: the
// canary share of n rounded up, at least one when n is not zero. An unset
// share counts as DefaultCanaryPercent.
func (u Upgrade) Canary(n int) int {
	if n <= 0 {
		return 0
	}
	pct := DefaultCanaryPercent
	if u.CanaryPercent != nil {
		pct = min(max(*u.CanaryPercent, 0), 100)
	}
	return min(max((n*int(pct)+99)/100, 1), n)
}
