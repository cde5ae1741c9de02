//go:build !linux

package devices

import "time"

// threadCPU is not measured here: the read chooser falls back to wall time.
func threadCPU() (time.Duration, bool) { return 0, false }
