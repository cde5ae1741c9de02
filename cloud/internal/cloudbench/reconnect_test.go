package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/internal/backoff"
	"wapper.dev/wapper/linkproto"
)

// TestReconnectSpread connects 500 simulated hosts, reconnecting with the
// hosts' policy (internal/backoff), to an in-process hub, which then
// closes every link at once while it stays up (as when the replica they
// were on stops and another one is up), and checks that they all come
// back, not all at once.
//
// The spread is checked on when each host meant to try again (its link's
// end plus the wait it drew), not on when it got through: a busy machine
// may delay the attempts, but cannot gather them. Whatever the spread of
// the links' ends, adding waits drawn uniformly over a window W puts at
// most about 100 ms / W of the hosts in any 100 ms; here W is 975 ms
// ([Min/2, Max] = [25 ms, 1 s]), so about 10%, 15% at most with 500 hosts,
// and the test allows 30%. Without jitter every host waits the same and
// the window holds them all; without the spread window (the doubling
// delay alone, [25, 50] ms after a session that lasted) too.
func TestReconnectSpread(t *testing.T) {
	const n = 500
	nodes, tokens := make([]string, n), make([]string, n)
	auth := hub.Tokens{}
	for i := range n {
		nodes[i], tokens[i] = node(i), fmt.Sprintf("tok-%d", i)
		auth[nodes[i]] = tokens[i]
	}
	h := hub.New(hub.Options{Auth: auth, Logger: slog.New(slog.DiscardHandler)})
	mux := http.NewServeMux()
	mux.Handle(linkproto.LinkPath, h)
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	defer h.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	policy := backoff.Backoff{Min: 50 * time.Millisecond, Max: time.Second, Spread: time.Second}
	tlsCfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
	f := newFleet(tlsCfg, policy, srv.Listener.Addr().String(), nodes, tokens)
	if err := f.connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer cancel()                                   // stops the hosts before the server closes
	time.Sleep(10*policy.Min + 500*time.Millisecond) // sessions that lasted

	p := f.begin()
	h.Close()
	if err := p.wait(ctx); err != nil {
		t.Fatal(err)
	}
	c := p.curve("hub closed every link")
	var out strings.Builder
	printCurves(&out, []curve{c}, 100*time.Millisecond, "the close")
	t.Logf("reconnect curve, %d hosts, policy %+v:\n%s", n, policy, out.String())

	if len(c.planned) != n {
		t.Fatalf("%d planned attempts recorded for %d hosts back", len(c.planned), n)
	}
	if most := peak(c.planned, 100*time.Millisecond); most > n*30/100 {
		t.Errorf("%d of %d hosts meant to reconnect within the same 100 ms (at most 30%% expected with the jitter)", most, n)
	}
}
