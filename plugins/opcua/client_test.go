package main

// The plugin, run natively through sdktest, against gopcua's OPC UA server
// (github.com/gopcua/opcua/server) in the test process: security None and
// anonymous, which is what that server implements. The end-to-end tests
// (e2e/opcua_test.go) run the wasm build against node-opcua, with
// Basic256Sha256 and users.

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"

	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// goServer serves a map namespace on 127.0.0.1:port (0: a free one).
func goServer(t *testing.T, port int, data map[string]any) (*server.Server, *server.MapNamespace, int) {
	t.Helper()
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	s := server.New(server.EnableSecurity("None", ua.MessageSecurityModeNone),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous), server.EndPoint("127.0.0.1", port))
	ns := server.NewMapNamespace(s, "wapper")
	for k, v := range data {
		ns.Data[k] = v
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ns, port
}

func TestAgainstGopcuaServer(t *testing.T) {
	_, ns, port := goServer(t, 0, map[string]any{"Temperature": 21.5, "Setpoint": 50.0, "Label": "boiler-1", "Count": int32(7)})
	prx, pport := startProxy(t, fmt.Sprintf("127.0.0.1:%d", port))
	node := func(name string) map[string]any {
		return map[string]any{"nodeID": fmt.Sprintf("ns=%d;s=%s", ns.ID(), name)}
	}
	p, err := sdktest.New(opcua{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sub := node("Count")
	sub["subscribe"] = true
	d, err := p.Add(sdktest.Description{
		Protocol:       "opcua",
		ProtocolConfig: map[string]any{"url": fmt.Sprintf("opc.tcp://127.0.0.1:%d", pport), "publishingInterval": 50, "timeout": "2s"},
		Properties: []sdktest.Property{
			{Name: "temperature", Type: "DOUBLE", Visitor: node("Temperature")},
			{Name: "setpoint", Type: "DOUBLE", AccessMode: "ReadWrite", Visitor: node("Setpoint")},
			{Name: "label", Type: "STRING", Visitor: node("Label")},
			{Name: "missing", Type: "INT", Visitor: node("Missing")},
			{Name: "count", Type: "INT", Visitor: sub},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	vals, errs, err := d.ReadBatch("temperature", "label", "missing")
	if err != nil || errs[0] != nil || errs[1] != nil || vals[0].Double() != 21.5 || vals[1].Str() != "boiler-1" {
		t.Fatalf("batch read: %v %v %v", vals, errs, err)
	}
	if errs[2] == nil || wapper.CodeOf(errs[2]) != wapper.ErrDeviceFailed {
		t.Errorf("read of a node the server lacks: %v, want device error", errs[2])
	}
	if st, _, _ := d.State(); st != wapper.StateOK {
		t.Errorf("state after reads: %v", st)
	}

	if err := d.Write("setpoint", wapper.Double(72.25)); err != nil {
		t.Fatal(err)
	}
	if v := ns.GetValue("Setpoint"); v != 72.25 {
		t.Errorf("server holds Setpoint %v after the write", v)
	}

	// The subscription reports changes the poll brings.
	deadline := time.Now().Add(10 * time.Second)
	var got []sdktest.Reading
	for n := int32(8); time.Now().Before(deadline) && len(got) < 3; n++ {
		ns.SetValue("Count", n)
		next, err := d.Poll(time.Second)
		if err != nil || next != 50*time.Millisecond {
			t.Fatalf("poll: %v, %v", next, err)
		}
		got = append(got, d.Reports()...)
		time.Sleep(60 * time.Millisecond)
	}
	if len(got) < 3 {
		t.Fatalf("%d readings reported through the subscription in 10 s: %v", len(got), got)
	}

	// The connection breaks (the server restarted, say): the next read
	// opens a new connection and session.
	prx.cut()
	ns.SetValue("Temperature", 30.0)
	if v, err := d.Read("temperature"); err != nil || v.Double() != 30 {
		t.Fatalf("read after the connection broke: %v, %v", v, err)
	}
	if prx.accepted() != 2 {
		t.Errorf("%d connections, want 2", prx.accepted())
	}
}

// proxy forwards TCP connections to a server, and cuts them on demand.
type proxy struct {
	mu    sync.Mutex
	conns []net.Conn
	n     int
}

func startProxy(t *testing.T, target string) (*proxy, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &proxy{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.n++
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p, l.Addr().(*net.TCPAddr).Port
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
