package hub_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/linkproto"
)

// start serves a hub over TLS with two nodes' tokens.
func start(t *testing.T, opts hub.Options) (*hub.Hub, *httptest.Server) {
	t.Helper()
	opts.Auth = hub.Tokens{"node-a": "tok-a", "node-b": "tok-b"}
	h := hub.New(opts)
	mux := http.NewServeMux()
	mux.Handle(linkproto.LinkPath, h)
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return h, srv
}

func dial(t *testing.T, srv *httptest.Server, node, token string, inv map[string]string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{
		TLSClientConfig: &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs},
		Subprotocols:    []string{linkproto.Subprotocol},
	}
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	hdr.Set(linkproto.NodeHeader, node)
	c, resp, err := d.Dial("wss"+strings.TrimPrefix(srv.URL, "https")+linkproto.LinkPath, hdr)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WriteJSON(linkproto.Message{Type: linkproto.TypeHello, Inventory: inv}); err != nil {
		t.Fatal(err)
	}
	return c, resp, nil
}

func read(t *testing.T, c *websocket.Conn) linkproto.Message {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	var m linkproto.Message
	if err := c.ReadJSON(&m); err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

func items(n int, version string) map[string]linkproto.Item {
	out := map[string]linkproto.Item{}
	for i := range n {
		k := linkproto.Key(linkproto.KindDevice, "ns", fmt.Sprintf("d%03d", i))
		out[k] = linkproto.Item{Key: k, Version: version, Object: json.RawMessage(`{}`)}
	}
	return out
}

// waitConnected waits until the hub lists node (the hello is read).
func waitConnected(t *testing.T, h *hub.Hub, node string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for _, n := range h.Connected() {
			if n == node {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never connected", node)
}

func TestCredentialsAreBoundToNodes(t *testing.T) {
	_, srv := start(t, hub.Options{})
	for _, tc := range []struct{ node, token string }{
		{"node-a", ""},
		{"node-a", "wrong"},
		{"node-a", "tok-b"}, // node-b's token does not make a host node-a
		{"", "tok-a"},
		{"node-c", "tok-a"},
	} {
		_, resp, err := dial(t, srv, tc.node, tc.token, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("node %q token %q: got err=%v resp=%v, want 401", tc.node, tc.token, err, resp)
		}
	}
	if _, _, err := dial(t, srv, "node-a", "tok-a", nil); err != nil {
		t.Fatalf("right credential refused: %v", err)
	}
}

// TestWindowAndCoalescing: a host that does not acknowledge gets exactly
// Window batches; changes meanwhile coalesce into the newest versions.
func TestWindowAndCoalescing(t *testing.T) {
	h, srv := start(t, hub.Options{Window: 2, BatchSize: 10})
	c, _, err := dial(t, srv, "node-a", "tok-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitConnected(t, h, "node-a")
	h.SetDesired("node-a", items(50, "v1"))
	m1, m2 := read(t, c), read(t, c)
	if m1.Seq != 1 || m2.Seq != 2 || len(m1.Items) != 10 || len(m2.Items) != 10 {
		t.Fatalf("first batches: seq %d (%d items), seq %d (%d items)", m1.Seq, len(m1.Items), m2.Seq, len(m2.Items))
	}
	if got := h.InFlight("node-a"); got != 2 {
		t.Fatalf("in flight = %d, want 2", got)
	}
	// Four more versions while the host is stuck: only the last is sent.
	for _, v := range []string{"v2", "v3", "v4", "v5"} {
		h.SetDesired("node-a", items(50, v))
	}
	if err := c.WriteJSON(linkproto.Message{Type: linkproto.TypeAck, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	m3 := read(t, c)
	if m3.Seq != 3 {
		t.Fatalf("after one ack got seq %d, want 3", m3.Seq)
	}
	received := map[string]string{}
	for _, it := range append(append(m1.Items, m2.Items...), m3.Items...) {
		received[it.Key] = it.Version
	}
	// Acknowledge everything from now on, until every object is at v5.
	for _, seq := range []uint64{2, 3} {
		if err := c.WriteJSON(linkproto.Message{Type: linkproto.TypeAck, Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan linkproto.Message, 100)
	go func() {
		for {
			var m linkproto.Message
			if err := c.ReadJSON(&m); err != nil {
				close(got)
				return
			}
			got <- m
			_ = c.WriteJSON(linkproto.Message{Type: linkproto.TypeAck, Seq: m.Seq})
		}
	}()
	waitFor(t, func() bool { return h.InSync("node-a") })
	c.Close()
	for m := range got {
		for _, it := range m.Items {
			if it.Version != "v5" {
				t.Errorf("batch %d sent %s at %s: superseded versions must not be sent", m.Seq, it.Key, it.Version)
			}
			received[it.Key] = it.Version
		}
	}
	for k, v := range items(50, "v5") {
		if received[k] != v.Version {
			t.Errorf("%s: host has %q, want v5", k, received[k])
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in a minute")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestResyncFromInventory: a host reconnecting with part of its set gets
// exactly what it lacks, and removals of what it should no longer hold.
func TestResyncFromInventory(t *testing.T) {
	h, srv := start(t, hub.Options{})
	want := items(20, "v1")
	inv := map[string]string{}
	i := 0
	for k := range want {
		if i%2 == 0 {
			inv[k] = "v1" // held at the right version
		} else if i%3 == 0 {
			inv[k] = "v0" // held, stale
		}
		i++
	}
	stale := linkproto.Key(linkproto.KindDevice, "ns", "gone")
	inv[stale] = "v1"
	c, _, err := dial(t, srv, "node-a", "tok-a", inv)
	if err != nil {
		t.Fatal(err)
	}
	waitConnected(t, h, "node-a")
	h.SetDesired("node-a", want)
	m := read(t, c)
	got := map[string]bool{}
	for _, it := range m.Items {
		got[it.Key] = true
		if it.Key == stale {
			if !it.Deleted() {
				t.Errorf("stale object sent instead of removed")
			}
			continue
		}
		if inv[it.Key] == "v1" {
			t.Errorf("%s sent again although the host holds it at v1", it.Key)
		}
	}
	for k := range want {
		if inv[k] != "v1" && !got[k] {
			t.Errorf("%s not sent", k)
		}
	}
	if !got[stale] {
		t.Error("stale object not removed")
	}
	if err := c.WriteJSON(linkproto.Message{Type: linkproto.TypeAck, Seq: m.Seq}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return h.InSync("node-a") })
}

// recorder is an Upstream that writes nothing and acknowledges at once.
type recorder struct {
	mu   sync.Mutex
	seqs []uint64
}

func (r *recorder) Submit(_ string, rs []linkproto.Report, done func([]uint64)) {
	var seqs []uint64
	for _, x := range rs {
		seqs = append(seqs, x.Seq)
	}
	r.mu.Lock()
	r.seqs = append(r.seqs, seqs...)
	r.mu.Unlock()
	done(seqs)
}

// TestReportsAndRemovalsWaitForTheDesiredSet: until the controller has
// computed a node, the hub removes nothing the host holds and passes no
// report on; then a node's reports on objects outside its set are dropped.
func TestReportsAndRemovalsWaitForTheDesiredSet(t *testing.T) {
	rec := &recorder{}
	h, srv := start(t, hub.Options{Upstream: rec})
	kept := linkproto.Key(linkproto.KindDevice, "ns", "kept")
	c, _, err := dial(t, srv, "node-a", "tok-a", map[string]string{kept: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	waitConnected(t, h, "node-a")
	if err := c.WriteJSON(linkproto.Message{Type: linkproto.TypeReport, Reports: []linkproto.Report{
		{Seq: 7, Plugin: &linkproto.PluginReport{Name: "p", Phase: "Loaded"}},
		{Seq: 8, Device: &linkproto.DeviceReport{Namespace: "ns", Name: "node-b-device"}},
	}}); err != nil {
		t.Fatal(err)
	}
	plugin := linkproto.Key(linkproto.KindMapperPlugin, "", "p")
	h.SetDesired("node-a", map[string]linkproto.Item{
		kept:   {Key: kept, Version: "v1", Object: json.RawMessage(`{}`)},
		plugin: {Key: plugin, Version: "v1", Object: json.RawMessage(`{}`)},
	})
	acked := map[uint64]bool{}
	applied := false
	for !applied || len(acked) < 2 {
		m := read(t, c)
		switch m.Type {
		case linkproto.TypeReportAck:
			for _, q := range m.Acked {
				acked[q] = true
			}
		case linkproto.TypeApply:
			if len(m.Items) != 1 || m.Items[0].Key != plugin {
				t.Fatalf("apply %+v, want only %s (the host holds %s already)", m.Items, plugin, kept)
			}
			applied = true
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.seqs) != 1 || rec.seqs[0] != 7 {
		t.Fatalf("passed on reports %v, want only 7 (8 names a device outside node-a's set)", rec.seqs)
	}
}

// TestStashedReportsGoFirst: reports stashed until the node's desired set
// is known go upstream before the reports that follow them, since the
// status writer merges later reports over earlier ones. The read loop
// forwarded a new report at once while the write loop had yet to forward
// the stash, so an old value could overwrite a newer one; that race is
// narrow, so the test runs the sequence many times.
func TestStashedReportsGoFirst(t *testing.T) {
	plugin := linkproto.Key(linkproto.KindMapperPlugin, "", "p")
	for i := range 20 {
		rec := &recorder{}
		h, srv := start(t, hub.Options{Upstream: rec})
		c, _, err := dial(t, srv, "node-a", "tok-a", nil)
		if err != nil {
			t.Fatal(err)
		}
		waitConnected(t, h, "node-a")
		send := func(seq uint64) {
			if err := c.WriteJSON(linkproto.Message{Type: linkproto.TypeReport, Reports: []linkproto.Report{
				{Seq: seq, Plugin: &linkproto.PluginReport{Name: "p", Phase: "Loaded"}},
			}}); err != nil {
				t.Fatal(err)
			}
		}
		send(1)
		time.Sleep(10 * time.Millisecond) // let the hub read (and stash) report 1 first; either order must pass
		h.SetDesired("node-a", map[string]linkproto.Item{plugin: {Key: plugin, Version: "v1", Object: json.RawMessage(`{}`)}})
		send(2)
		waitFor(t, func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return len(rec.seqs) == 2
		})
		rec.mu.Lock()
		if rec.seqs[0] != 1 || rec.seqs[1] != 2 {
			t.Fatalf("run %d: reports went upstream in the order %v, want [1 2]", i, rec.seqs)
		}
		rec.mu.Unlock()
		c.Close()
		h.Close()
		srv.Close()
	}
}
