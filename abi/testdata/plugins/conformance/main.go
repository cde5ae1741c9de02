// Command conformance is the Go conformance plugin: exactly the behaviour
// written down in abi/CONFORMANCE.md, which the Rust conformance plugin
// (sdk-rust/examples/conformance) shares. The host-side suite in
// host/conformance runs the same cases against both builds.
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"wapper.dev/wapper/abi"
	wapper "wapper.dev/wapper/sdk-go"
)

// conformance is the driver; all its state is per device.
type conformance struct{}

// leaky is set by the build tag "leak" (leak.go): the plugin then keeps
// every written value and removed device in hoard, so that tests can see
// the suite's memory cases catch a plugin that leaks.
var (
	leaky bool
	hoard []any
)

// data is a device's state, in the instance's memory only, and its parsed
// property visitors.
type data struct {
	echo  map[uint32]wapper.Value
	polls int64
	props map[uint32]*propInfo
}

// propInfo is a property's visitor, parsed once per description.
type propInfo struct {
	kind string
	f    fields
}

// parse reads every property's visitor of d's current description.
func (st *data) parse(d *wapper.Device) {
	st.props = map[uint32]*propInfo{}
	for _, p := range d.Properties() {
		f := parseFields(p.Visitor)
		k, _ := f.text("kind")
		st.props[p.Handle] = &propInfo{kind: k, f: f}
	}
}

func info(d *wapper.Device, p *wapper.Property) *propInfo { return state(d).props[p.Handle] }

// fields is a flat configData object (visitor or protocol config) whose
// values may be strings, numbers or booleans.
type fields map[string]json.RawMessage

func parseFields(raw json.RawMessage) fields {
	f := fields{}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &f) // anything but an object reads as empty
	}
	return f
}

// text returns a string, number or boolean field as text.
func (f fields) text(key string) (string, bool) {
	raw, ok := f[key]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	t := strings.TrimSpace(string(raw))
	if t == "true" || t == "false" || (t != "" && t != "null" && t[0] != '"' && t[0] != '{' && t[0] != '[') {
		return t, true
	}
	return "", false
}

// str returns a field only if it is a JSON string.
func (f fields) str(key string) (string, bool) {
	raw, ok := f[key]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// int returns a number field, or a string holding an integer.
func (f fields) int(key string) (int64, bool) {
	s, ok := f.text(key)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

func declaredType(p *wapper.Property) (wapper.Type, error) {
	t, ok := abi.ParseType(p.Property.Type)
	if !ok {
		return t, wapper.Errorf(wapper.ErrInvalid, "property %q has unknown type %q", p.Name, p.Property.Type)
	}
	return t, nil
}

func zero(t wapper.Type) wapper.Value {
	switch t {
	case abi.TypeInt:
		return wapper.Int(0)
	case abi.TypeFloat:
		return wapper.Float(0)
	case abi.TypeDouble:
		return wapper.Double(0)
	case abi.TypeString:
		return wapper.String("")
	case abi.TypeBoolean:
		return wapper.Bool(false)
	case abi.TypeBytes:
		return wapper.Bytes(nil)
	default:
		return abi.Stream(nil)
	}
}

func visitorError(f fields) error {
	code, ok := f.int("code")
	if !ok || code < 1 || code > 255 {
		code = 1
	}
	msg, _ := f.text("message")
	return &abi.Error{Code: abi.Code(code), Message: msg}
}

func kvKey(f fields) string {
	k, _ := f.text("key")
	return k
}

func unknownKind(k string) error {
	return wapper.Errorf(wapper.ErrUnsupported, "unknown visitor kind %q", k)
}

func state(d *wapper.Device) *data { return d.Data.(*data) }

func (conformance) Init(cfg []byte) error {
	var c map[string]json.RawMessage
	if json.Unmarshal(cfg, &c) == nil {
		if m, ok := fields(c).str("failInit"); ok {
			return wapper.Errorf(wapper.ErrInvalid, "%s", m)
		}
	}
	return nil
}

func (conformance) AddDevice(d *wapper.Device) error {
	if m, ok := parseFields(d.Device.ProtocolConfig).str("failAdd"); ok {
		return wapper.Errorf(wapper.ErrInvalid, "%s", m)
	}
	st := &data{echo: map[uint32]wapper.Value{}}
	st.parse(d)
	d.Data = st
	return nil
}

func (conformance) UpdateDevice(d *wapper.Device) error {
	state(d).parse(d)
	return nil
}

func (conformance) RemoveDevice(d *wapper.Device) error {
	if leaky {
		hoard = append(hoard, d)
	}
	return nil
}

func (conformance) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	t, err := declaredType(p)
	if err != nil {
		return wapper.Value{}, err
	}
	pi := info(d, p)
	switch pi.kind {
	case "echo":
		if v, ok := state(d).echo[p.Handle]; ok {
			return v, nil
		}
		return zero(t), nil
	case "error":
		return wapper.Value{}, visitorError(pi.f)
	case "kv":
		key := kvKey(pi.f)
		b, ok, err := wapper.KVGet(key)
		if err != nil {
			return wapper.Value{}, err
		}
		if !ok {
			return wapper.Value{}, wapper.Errorf(wapper.ErrNotFound, "kv key %q is absent", key)
		}
		v, err := abi.DecodeValue(b)
		if err != nil {
			return wapper.Value{}, wapper.Errorf(wapper.ErrInvalid, "kv key %q: %v", key, err)
		}
		return v, nil
	case "panic":
		panic("conformance panic")
	case "poll":
		return wapper.Int(state(d).polls), nil
	case "spin":
		ms, _ := pi.f.int("ms")
		start := time.Now() // monotonic clock, through WASI's clock_time_get
		for {
			spent := time.Since(start).Milliseconds()
			if ms > 0 && spent >= ms {
				return wapper.Int(spent), nil
			}
		}
	default:
		return wapper.Value{}, unknownKind(pi.kind)
	}
}

func (conformance) Write(d *wapper.Device, p *wapper.Property, v wapper.Value) error {
	t, err := declaredType(p)
	if err != nil {
		return err
	}
	pi := info(d, p)
	switch pi.kind {
	case "echo":
		if v.Type() != t {
			return wapper.Errorf(wapper.ErrInvalid, "echo: value type %s does not match declared type %s", v.Type(), t)
		}
		state(d).echo[p.Handle] = v // the SDK decoded it into a copy
		if leaky {
			hoard = append(hoard, v)
		}
		return nil
	case "error":
		return visitorError(pi.f)
	case "kv":
		return wapper.KVSet(kvKey(pi.f), v.Encode())
	case "panic":
		panic("conformance panic")
	case "poll", "spin":
		return wapper.Errorf(wapper.ErrUnsupported, "%s properties are not writable", pi.kind)
	default:
		return unknownKind(pi.kind)
	}
}

// reasonError carries a reason as it is: the SDK reports a failing State
// as unhealthy with err.Error() as the reason.
type reasonError string

func (e reasonError) Error() string { return string(e) }

func (conformance) State(d *wapper.Device) (wapper.State, error) {
	f := parseFields(d.Device.ProtocolConfig)
	if r, ok := f.str("reason"); ok {
		return wapper.StateUnhealthy, reasonError(r)
	}
	s, ok := f.str("state")
	if !ok {
		return wapper.StateOK, nil
	}
	st, known := abi.ParseState(s)
	if !known {
		return wapper.StateUnhealthy, reasonError(fmt.Sprintf("unknown state %q", s))
	}
	return st, nil
}

func (conformance) Poll(d *wapper.Device, _ time.Duration) (time.Duration, error) {
	var polls []*wapper.Property
	for _, p := range d.Properties() {
		if info(d, p).kind == "poll" {
			polls = append(polls, p)
		}
	}
	if len(polls) == 0 {
		return 0, nil
	}
	st := state(d)
	st.polls++
	for _, p := range polls {
		if err := wapper.Report(p, wapper.Int(st.polls)); err != nil {
			return 0, err
		}
	}
	every, ok := info(d, polls[0]).f.int("every")
	if !ok || every <= 0 || every > 1<<32-1 {
		every = 100
	}
	return time.Duration(every) * time.Millisecond, nil
}

func (conformance) CallMethod(_ *wapper.Device, method string, args []byte) ([]byte, error) {
	switch method {
	case "echo":
		if len(args) == 0 {
			return []byte("null"), nil
		}
		var out bytes.Buffer
		if err := json.Compact(&out, args); err != nil {
			return nil, wapper.Errorf(wapper.ErrInvalid, "echo args: %v", err)
		}
		return out.Bytes(), nil
	case "kvDelete":
		var a struct {
			Key json.RawMessage `json:"key"`
		}
		_ = json.Unmarshal(args, &a)
		key, _ := fields{"key": a.Key}.text("key")
		return nil, wapper.KVDelete(key)
	case "secret":
		f := methodFields(args)
		ref, _ := f.text("ref")
		v, err := wapper.Secret(ref)
		if err != nil {
			return nil, err
		}
		out, _ := json.Marshal(hex.EncodeToString(v))
		clear(v)
		return out, nil
	case "dialEcho":
		return dialEcho(methodFields(args))
	case "dgramEcho":
		return dgramEcho(methodFields(args))
	default:
		return nil, wapper.Errorf(wapper.ErrNotFound, "unknown method %q", method)
	}
}

// methodFields reads a method's args object as fields.
func methodFields(args []byte) fields {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(args, &m) // anything but an object reads as empty
	return fields(m)
}

// dialEcho opens a socket of kind f.kind to f.addr, writes f.send, reads
// as many bytes back and closes the socket; the result is what it read,
// as a JSON string.
func dialEcho(f fields) ([]byte, error) {
	kind, _ := f.text("kind")
	addr, _ := f.text("addr")
	send, _ := f.text("send")
	switch kind {
	case "tcp", "udp", "tls":
	default:
		return nil, wapper.Errorf(wapper.ErrInvalid, "dialEcho: unknown kind %q", kind)
	}
	c, err := wapper.Dial(kind, addr, 0)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(send)); err != nil {
		return nil, err
	}
	got := make([]byte, len(send))
	if _, err := io.ReadFull(c, got); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, wapper.Errorf(wapper.ErrClosed, "dialEcho %s: the peer closed the connection", addr)
		}
		return nil, err
	}
	if err := c.Close(); err != nil {
		return nil, err
	}
	return json.Marshal(string(got))
}

// dgramEcho binds a datagram socket to f.bind, sends f.send as one
// datagram to f.to, receives one datagram (waiting f.timeoutMs, or the
// host default when absent or 0) and closes the socket; the result is
// {"data": what it received, "from": its sender}.
func dgramEcho(f fields) ([]byte, error) {
	bind, _ := f.text("bind")
	to, _ := f.text("to")
	send, _ := f.text("send")
	ms, _ := f.int("timeoutMs")
	c, err := wapper.ListenPacket(bind)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if ms > 0 {
		c.SetReadDeadline(time.Now().Add(time.Duration(ms) * time.Millisecond))
	}
	if _, err := c.WriteTo([]byte(send), wapper.Addr{Net: "udp", Addr: to}); err != nil {
		return nil, err
	}
	buf := make([]byte, 64<<10)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		return nil, err
	}
	if err := c.Close(); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]string{"data": string(buf[:n]), "from": from.String()})
}

func init() { wapper.Register(conformance{}) }

func main() {}
