package hub_test

import (
	"sync"
	"testing"

	"wapper.dev/wapper/cloud/hub"
)

// TestInFlightDuringReconnects: InFlight may be called while the node's
// host reconnects (each new session replaces the node's older one); under
// -race this checks that InFlight reads the session under the hub's lock.
func TestInFlightDuringReconnects(t *testing.T) {
	h, srv := start(t, hub.Options{})
	if _, _, err := dial(t, srv, "node-a", "tok-a", nil); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, h, "node-a")
	h.SetDesired("node-a", items(5, "v1"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := h.InFlight("node-a"); n < 0 {
				t.Errorf("InFlight = %d", n)
			}
		}
	}()
	for range 20 {
		if _, _, err := dial(t, srv, "node-a", "tok-a", nil); err != nil {
			t.Fatal(err)
		}
		waitConnected(t, h, "node-a")
	}
	close(stop)
	wg.Wait()
}
