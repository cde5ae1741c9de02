package hub_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"

	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/linkproto"
)

// countingConn counts the bytes read from a connection (below TLS).
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// TestCompression: permessage-deflate is used only when both the hub
// (Options.Compression) and the host ask for it; either way a batch is
// delivered and acknowledged, and with it on both sides a compressible
// batch takes a fraction of the bytes on the wire.
func TestCompression(t *testing.T) {
	// One device whose object compresses well, as Devices do.
	obj, err := json.Marshal(map[string]any{"spec": map[string]any{"properties": strings.Repeat(`{"name":"temperature","visitors":{"protocolName":"modbus"}},`, 400)}})
	if err != nil {
		t.Fatal(err)
	}
	key := linkproto.Key(linkproto.KindDevice, "ns", "d1")
	desired := map[string]linkproto.Item{key: {Key: key, Version: "v1", Object: obj}}
	wire := map[[2]bool]int64{}
	for _, tc := range []struct{ hub, host bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		h, srv := start(t, hub.Options{Compression: tc.hub})
		var got atomic.Int64
		d := websocket.Dialer{
			TLSClientConfig:   &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs},
			Subprotocols:      []string{linkproto.Subprotocol},
			EnableCompression: tc.host,
			NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return countingConn{Conn: c, read: &got}, nil
			},
		}
		hdr := http.Header{}
		hdr.Set("Authorization", "Bearer tok-a")
		hdr.Set(linkproto.NodeHeader, "node-a")
		c, resp, err := d.Dial("wss"+strings.TrimPrefix(srv.URL, "https")+linkproto.LinkPath, hdr)
		if err != nil {
			t.Fatalf("hub %v, host %v: %v", tc.hub, tc.host, err)
		}
		negotiated := strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
		if want := tc.hub && tc.host; negotiated != want {
			t.Errorf("hub %v, host %v: permessage-deflate negotiated %v, want %v", tc.hub, tc.host, negotiated, want)
		}
		c.EnableWriteCompression(tc.host)
		if err := c.WriteJSON(linkproto.Message{Type: linkproto.TypeHello}); err != nil {
			t.Fatal(err)
		}
		waitConnected(t, h, "node-a")
		before := got.Load()
		h.SetDesired("node-a", desired)
		m := read(t, c)
		if m.Type != linkproto.TypeApply || len(m.Items) != 1 || string(m.Items[0].Object) != string(obj) {
			t.Fatalf("hub %v, host %v: got %s with %d items, want the device", tc.hub, tc.host, m.Type, len(m.Items))
		}
		wire[[2]bool{tc.hub, tc.host}] = got.Load() - before
		if err := c.WriteJSON(linkproto.Message{Type: linkproto.TypeAck, Seq: m.Seq}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return h.InSync("node-a") })
		c.Close()
	}
	plain, deflated := wire[[2]bool{false, false}], wire[[2]bool{true, true}]
	t.Logf("a %d-byte object: %d bytes on the wire without compression, %d with it", len(obj), plain, deflated)
	if plain < int64(len(obj)) || deflated*4 > plain {
		t.Errorf("bytes on the wire for a %d-byte object: %d without compression, %d with it; want a quarter or less with it", len(obj), plain, deflated)
	}
	for _, one := range [][2]bool{{true, false}, {false, true}} {
		if n := wire[one]; n < int64(len(obj)) {
			t.Errorf("hub %v, host %v: %d bytes on the wire for a %d-byte object: compressed although only one side asked", one[0], one[1], n, len(obj))
		}
	}
}
