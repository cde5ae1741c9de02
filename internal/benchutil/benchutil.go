// Package benchutil holds what the benchmark commands
// (cloud/internal/cloudbench, hack/bench-link-bytes) share.
package benchutil

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

// Parallel calls fn(i) for every i in [0, n) from workers goroutines and
// returns the first error; a worker stops at its first error, the others
// carry on.
func Parallel(workers, n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		mu    sync.Mutex // guards first
		first error
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// NumCPU counts the machine's processors in /proc/cpuinfo (0 when it
// cannot be read), for the figures' heading.
func NumCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}
