package sdktest_test

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// thermometer is the driver under test: a device on TCP that answers
// "READ <channel>" with a temperature on a line of its own.
type thermometer struct{ wapper.Base }

// link is a device's connection, kept in Device.Data.
type link struct {
	addr    string
	timeout time.Duration
	conn    *wapper.Conn
	r       *bufio.Reader
	lastErr error
}

func (thermometer) AddDevice(d *wapper.Device) error {
	var pc struct {
		Addr string `json:"addr"`
	}
	if err := d.ProtocolConfig(&pc); err != nil {
		return err
	}
	var cfg wapper.Config
	if err := d.ProtocolConfig(&cfg); err != nil {
		return err
	}
	ms, err := cfg.Int("timeoutMS", 1000)
	if err != nil {
		return wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData: %v", d, err)
	}
	d.Data = &link{addr: pc.Addr, timeout: time.Duration(ms) * time.Millisecond}
	return nil
}

func (thermometer) RemoveDevice(d *wapper.Device) error {
	if l := d.Data.(*link); l.conn != nil {
		l.conn.Close()
	}
	return nil
}

func (thermometer) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	var cfg wapper.Config
	if err := p.Visit(&cfg); err != nil {
		return wapper.Value{}, err
	}
	ch, err := cfg.Int("channel", 1)
	if err != nil {
		return wapper.Value{}, err
	}
	l := d.Data.(*link)
	v, err := l.ask(fmt.Sprintf("READ %d\n", ch))
	l.lastErr = err
	if err != nil {
		return wapper.Value{}, err
	}
	return wapper.Double(v), nil
}

// ask sends a request and parses the answer, reconnecting when the
// connection is gone.
func (l *link) ask(req string) (float64, error) {
	if l.conn == nil {
		c, err := wapper.Dial("tcp", l.addr, l.timeout)
		if err != nil {
			return 0, err // an *wapper.IOError: its code tells what happened
		}
		l.conn, l.r = c, bufio.NewReader(c)
	}
	l.conn.SetDeadline(time.Now().Add(l.timeout))
	_, err := l.conn.Write([]byte(req))
	var line string
	if err == nil {
		line, err = l.r.ReadString('\n')
	}
	if err != nil {
		l.conn.Close()
		l.conn = nil
		if wapper.IsClosed(err) {
			return 0, wapper.Errorf(wapper.ErrUnavailable, "%s closed the connection", l.addr)
		}
		return 0, err
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
	if err != nil {
		return 0, wapper.Errorf(wapper.ErrDeviceFailed, "device answered %q", strings.TrimSpace(line))
	}
	return v, nil
}

// State is ok after a good read, and offline, with the reason, after a
// failed one.
func (thermometer) State(d *wapper.Device) (wapper.State, error) {
	if err := d.Data.(*link).lastErr; err != nil {
		return wapper.StateOffline, wapper.Reason("last read failed: %v", err)
	}
	return wapper.StateOK, nil
}

// simulate serves the thermometer's protocol on a local port: channel 1
// is at 21.5 degrees, other channels answer an error. stop closes the
// listener and every connection.
func simulate() (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				r := bufio.NewReader(c)
				for {
					req, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if req == "READ 1\n" {
						fmt.Fprintln(c, "21.5")
					} else {
						fmt.Fprintln(c, "ERR no such channel")
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
}

// A driver tested against a device simulator on a net.Listener: the
// harness adds the device as the host would, and Read, State and Remove go
// through the SDK's exports.
func Example() {
	addr, stop := simulate()

	p, err := sdktest.New(thermometer{}, nil)
	if err != nil {
		panic(err)
	}
	defer p.Close()
	dev, err := p.Add(sdktest.Description{
		Name: "thermo-1",
		// KubeEdge may pass numbers as strings: Config.Int takes both.
		ProtocolConfig: map[string]any{"addr": addr, "timeoutMS": "500"},
		Properties: []sdktest.Property{
			{Name: "temperature", Type: "DOUBLE", Visitor: map[string]any{"channel": 1}},
			{Name: "humidity", Type: "INT", Visitor: map[string]any{"channel": 2}},
		},
	})
	if err != nil {
		panic(err)
	}

	v, err := dev.Read("temperature")
	fmt.Println("temperature:", v.Text(), err)
	state, reason, _ := dev.State()
	fmt.Printf("state: %s %q\n", state, reason)

	_, err = dev.Read("humidity")
	fmt.Println("humidity:", err)

	stop() // the device goes away
	_, err = dev.Read("temperature")
	fmt.Println("code:", wapper.CodeOf(err))
	state, _, _ = dev.State()
	fmt.Println("state:", state)

	fmt.Println("remove:", dev.Remove())
	_, err = dev.Read("temperature")
	fmt.Println("after remove:", wapper.CodeOf(err))
	// Output:
	// temperature: 21.5 <nil>
	// state: ok ""
	// humidity: device error: device answered "ERR no such channel"
	// code: unavailable
	// state: offline
	// remove: <nil>
	// after remove: not found
}

// A bad configData number fails when the device is added, with an error
// naming the field.
func ExamplePlugin_Add() {
	p, err := sdktest.New(thermometer{}, nil)
	if err != nil {
		panic(err)
	}
	_, err = p.Add(sdktest.Description{
		Name:           "thermo-2",
		ProtocolConfig: map[string]any{"addr": "127.0.0.1:1", "timeoutMS": 0.5},
	})
	fmt.Println(err)
	// Output:
	// invalid argument: device default/thermo-2: protocol configData: field "timeoutMS": 0.5 is not a whole number
}
