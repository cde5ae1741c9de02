package hub_test

import (
	"testing"
	"time"

	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/linkproto"
)

// TestLinks: a connected node shows what it still lacks and since when
// its oldest batch waits; one that left shows when.
func TestLinks(t *testing.T) {
	h, srv := start(t, hub.Options{Window: 1, BatchSize: 10})
	link := func(node string) hub.Link {
		t.Helper()
		for _, l := range h.Links() {
			if l.Node == node {
				return l
			}
		}
		t.Fatalf("no link of %s in %+v", node, h.Links())
		return hub.Link{}
	}
	before := time.Now()
	c, _, err := dial(t, srv, "node-a", "tok-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitConnected(t, h, "node-a")
	if l := link("node-a"); !l.Connected || l.Known || l.Since.Before(before) || l.LastSeen.Before(before) || l.Remote == "" {
		t.Fatalf("before the desired set: %+v", l)
	}
	h.SetDesired("node-a", items(25, "v1"))
	m := read(t, c)
	l := link("node-a")
	if !l.Known || l.Desired != 25 || l.Outstanding != 25 || l.InFlight != 1 || l.OldestUnacked.Before(before) {
		t.Fatalf("one batch out: %+v", l)
	}
	if err := c.WriteJSON(linkproto.Message{Type: linkproto.TypeAck, Seq: m.Seq}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { l := link("node-a"); return l.Outstanding == 15 && l.InFlight == 1 })
	for range 2 {
		m := read(t, c)
		if err := c.WriteJSON(linkproto.Message{Type: linkproto.TypeAck, Seq: m.Seq}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		l := link("node-a")
		return l.Outstanding == 0 && l.InFlight == 0 && l.OldestUnacked.IsZero()
	})
	if !h.InSync("node-a") {
		t.Fatal("not in sync with nothing outstanding")
	}
	c.Close()
	waitFor(t, func() bool { return !link("node-a").Connected })
	if l := link("node-a"); l.Since.Before(before) || l.Desired != 0 {
		t.Fatalf("after it left: %+v", l)
	}
}
