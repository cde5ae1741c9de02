package cloudlink_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"wapper.dev/wapper/host/cloudlink"
)

// TestSlowApplyKeepsTheLink: a batch whose hand-over to the device
// manager takes longer than the link's timeout (a plugin compiling on a
// slow or busy host: 15 s was seen on 2 loaded cores) does not drop a
// healthy link. The read loop is busy meanwhile, so the read deadline set
// when the batch came has passed when it reads again; the time the host
// spent is not the cloud's silence (issue 19, found under Toxiproxy).
func TestSlowApplyKeepsTheLink(t *testing.T) {
	c := newCluster(t)
	cl := c.startCloud(t, "", nil)
	c.apply(t, names(t, c, plugin+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")))
	all := has("Device/"+c.ns+"/a1", "DeviceModel/"+c.ns+"/thermo", "MapperPlugin/virtual-"+c.ns)

	var slow atomic.Bool
	h := startHost(t, "https://"+cl.addr, c.node("a"), c.token(t, c.node("a")), cl.ca, filepath.Join(t.TempDir(), "a.db"), func(o *cloudlink.Options) {
		o.Keepalive, o.Timeout = 200*time.Millisecond, time.Second
		inner := o.Sink
		o.Sink = cloudlink.SinkFunc(func(ctx context.Context, s cloudlink.Set) error {
			if len(s.Devices) > 0 && slow.CompareAndSwap(false, true) {
				time.Sleep(3 * time.Second) // three timeouts
			}
			return inner.Sync(ctx, s)
		})
	})
	h.sink.wait(t, "a1", all)
	// Idle for a while after the slow batch: the link stays up.
	time.Sleep(2 * time.Second)
	if got := h.drops(t, "timeout"); got != 0 {
		t.Errorf("the link was dropped %v times for a timeout after a slow apply", got)
	}
	if got := h.counter(t, "wapper_cloudlink_connects_total"); got != 1 || !h.link.Connected() {
		t.Errorf("connects %v (want 1), connected %v", got, h.link.Connected())
	}
}
