package devices

import (
	"testing"
	"time"
)

// TestReadChooser: both modes are probed, then the batch is used only when
// it costs clearly less per property (CPU, or wall time when the reads
// mostly wait); a new window probes again.
func TestReadChooser(t *testing.T) {
	run := func(batchCost, singleCost, wait time.Duration) (batches int) {
		var c readChooser
		for range chooserProbes * 2 {
			batch, probing := c.pick()
			if !probing {
				t.Fatal("no probe at the start of a window")
			}
			cost, waits := singleCost, 2*wait
			if batch {
				cost, waits = batchCost, wait // one round trip for both
			}
			c.record(batch, 2*cost+waits, 2*cost, 2)
		}
		for range 100 {
			if b, probing := c.pick(); probing {
				t.Fatal("probing after the probes")
			} else if b {
				batches++
			}
		}
		c.n = chooserWindow
		if _, probing := c.pick(); !probing {
			t.Fatal("a new window does not probe again")
		}
		return batches
	}
	if n := run(10*time.Microsecond, 4*time.Microsecond, 0); n != 0 {
		t.Errorf("batches costlier than single reads chosen %d times", n)
	}
	if n := run(50*time.Microsecond, 100*time.Microsecond, 0); n != 100 {
		t.Errorf("batches twice as cheap chosen %d times of 100", n)
	}
	if n := run(95*time.Microsecond, 100*time.Microsecond, 0); n != 0 {
		t.Errorf("batches barely cheaper chosen %d times", n)
	}
	// A device round trip of 2 ms: one batch saves one round trip even
	// when it costs more CPU.
	if n := run(30*time.Microsecond, 5*time.Microsecond, 2*time.Millisecond); n != 100 {
		t.Errorf("batches saving round trips chosen %d times of 100", n)
	}
}
