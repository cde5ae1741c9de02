package sdktest_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// recorder is a driver that records what reaches it and answers from
// per-device state.
type recorder struct {
	config   string
	added    []string // property names AddDevice saw, per device
	updates  int
	removed  int
	failAdd  bool
	written  map[string]wapper.Value
	batches  int
	reportAt string // property AddDevice reports, if set
}

func (r *recorder) Init(cfg []byte) error {
	r.config = string(cfg)
	var c struct{ Fail string }
	json.Unmarshal(cfg, &c)
	if c.Fail != "" {
		return wapper.Errorf(70, "%s", c.Fail)
	}
	return nil
}

func (r *recorder) AddDevice(d *wapper.Device) error {
	if r.failAdd {
		return wapper.Errorf(wapper.ErrInvalid, "refused %s", d)
	}
	var names []string
	for _, p := range d.Properties() {
		names = append(names, p.Name)
	}
	r.added = append(r.added, strings.Join(names, ","))
	if r.reportAt != "" {
		if err := wapper.Report(d.PropertyByName(r.reportAt), wapper.Int(1)); err != nil {
			return err
		}
	}
	return nil
}

func (r *recorder) UpdateDevice(d *wapper.Device) error {
	r.updates++
	if d.PropertyByName("refuse") != nil {
		return wapper.Errorf(wapper.ErrInvalid, "no")
	}
	return nil
}

func (r *recorder) RemoveDevice(*wapper.Device) error { r.removed++; return nil }

func (r *recorder) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	switch p.Name {
	case "panics":
		panic("kaboom")
	case "fails":
		return wapper.Value{}, wapper.Errorf(wapper.ErrDeviceFailed, "exception 2")
	case "int-as-string":
		return wapper.String("42"), nil
	case "bad-string":
		return wapper.String("forty-two"), nil
	case "visitor":
		var v wapper.Config
		if err := p.Visit(&v); err != nil {
			return wapper.Value{}, err
		}
		n, err := v.Float("x", 0)
		return wapper.Double(n), err
	}
	if v, ok := r.written[d.Name+"/"+p.Name]; ok {
		return v, nil
	}
	return wapper.Int(int64(p.Handle)), nil
}

func (r *recorder) ReadBatch(d *wapper.Device, props []*wapper.Property) ([]wapper.Value, []error) {
	r.batches++
	vals, errs := make([]wapper.Value, len(props)), make([]error, len(props))
	for i, p := range props {
		vals[i], errs[i] = r.Read(d, p)
	}
	return vals, errs
}

func (r *recorder) Write(d *wapper.Device, p *wapper.Property, v wapper.Value) error {
	if r.written == nil {
		r.written = map[string]wapper.Value{}
	}
	r.written[d.Name+"/"+p.Name] = v
	return nil
}

func (r *recorder) State(d *wapper.Device) (wapper.State, error) {
	switch d.Model {
	case "offline":
		return wapper.StateOffline, wapper.Reason("cable %s", "unplugged")
	case "broken":
		return wapper.StateOK, errors.New("cannot tell")
	case "wrapped":
		return wapper.StateUnhealthy, wapper.Reason("probe: %w", wapper.Errorf(wapper.ErrTimeout, "no answer"))
	}
	return wapper.StateOnline, nil
}

func (r *recorder) CallMethod(d *wapper.Device, method string, args []byte) ([]byte, error) {
	if method != "echo" {
		return nil, wapper.Errorf(wapper.ErrNotFound, "no method %q", method)
	}
	return args, nil
}

func (r *recorder) Poll(d *wapper.Device, budget time.Duration) (time.Duration, error) {
	for _, p := range d.Properties() {
		if err := wapper.Report(p, wapper.String("7")); err != nil {
			return 0, err
		}
	}
	return budget / 2, nil
}

func newPlugin(t *testing.T, r *recorder) *sdktest.Plugin {
	t.Helper()
	p, err := sdktest.New(r, map[string]any{"level": 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func code(t *testing.T, what string, err error, want wapper.Code) {
	t.Helper()
	if got := wapper.CodeOf(err); got != want {
		t.Fatalf("%s: %v (code %v), want code %v", what, err, got, want)
	}
}

func TestInit(t *testing.T) {
	r := &recorder{}
	newPlugin(t, r)
	if r.config != `{"level":3}` {
		t.Errorf("config %s", r.config)
	}
	p, err := sdktest.New(&recorder{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	_, err = sdktest.New(&recorder{}, `{"fail":"bad config"}`)
	code(t, "failing Init", err, 70)
	if !strings.Contains(err.Error(), "bad config") {
		t.Errorf("init error %q", err)
	}
	if _, err := sdktest.New(&recorder{}, "[1]"); err == nil {
		t.Error("a config that is not an object was accepted")
	}
	// No driver given and none registered in this test binary.
	if _, err := sdktest.New(nil, nil); err == nil || !strings.Contains(err.Error(), "Register") {
		t.Errorf("New without a driver: %v", err)
	}
}

func TestDevices(t *testing.T) {
	r := &recorder{}
	p := newPlugin(t, r)
	d, err := p.Add(sdktest.Description{Name: "a", Properties: []sdktest.Property{
		{Name: "n", Type: "int", AccessMode: "ReadWrite"},
		{Name: "ro", Type: "INT"},
		{Name: "visitor", Type: "DOUBLE", Visitor: `{"x":"2.5"}`},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if d.ID() != 1 || d.String() != "default/a" {
		t.Errorf("device %d %s", d.ID(), d)
	}
	if r.added[0] != "n,ro,visitor" {
		t.Errorf("AddDevice saw properties %q", r.added[0])
	}
	// Reads: values come back converted to the declared type.
	if v, err := d.Read("ro"); err != nil || v.Type() != wapper.TypeInt || v.Int() != 1 {
		t.Errorf("read ro = %#v, %v", v, err)
	}
	if v, err := d.Read("visitor"); err != nil || v.Double() != 2.5 {
		t.Errorf("read visitor = %#v, %v", v, err)
	}
	_, err = d.Read("nope")
	code(t, "read of an unknown property", err, wapper.ErrNotFound)
	// Writes: converted first, refused when read-only.
	if err := d.Write("n", wapper.String("42")); err != nil {
		t.Fatal(err)
	}
	if v := r.written["a/n"]; v.Type() != wapper.TypeInt || v.Int() != 42 {
		t.Errorf("driver got %#v", v)
	}
	code(t, "write of a non-number", d.Write("n", wapper.String("x")), wapper.ErrInvalid)
	code(t, "write of a fraction", d.Write("n", wapper.Double(1.5)), wapper.ErrInvalid)
	code(t, "write to ReadOnly", d.Write("ro", wapper.Int(1)), wapper.ErrReadOnly)

	// A second device gets the next id; a refused one is not added.
	d2, err := p.Add(sdktest.Description{Name: "b"})
	if err != nil || d2.ID() != 2 {
		t.Fatalf("second device %v, %v", d2, err)
	}
	r.failAdd = true
	_, err = p.Add(sdktest.Description{Name: "c"})
	code(t, "refused add", err, wapper.ErrInvalid)
	r.failAdd = false

	// Update keeps handles by name, and new properties get new ones.
	if err := d.Update(sdktest.Description{Name: "a", Properties: []sdktest.Property{
		{Name: "new", Type: "STRING"}, {Name: "n", Type: "INT", AccessMode: "ReadWrite"},
	}}); err != nil {
		t.Fatal(err)
	}
	if v, err := d.Read("n"); err != nil || v.Int() != 42 {
		t.Errorf("n after update = %#v, %v", v, err)
	}
	if v, err := d.Read("new"); err != nil || v.Str() != "3" {
		t.Errorf("new property read %#v, %v (want its handle 3 as a STRING)", v, err)
	}
	code(t, "update the driver refuses", d.Update(sdktest.Description{Name: "a", Properties: []sdktest.Property{{Name: "refuse", Type: "INT"}}}), wapper.ErrInvalid)
	if _, err := d.Read("new"); wapper.CodeOf(err) != wapper.ErrNotFound {
		t.Errorf("after a refused update, the old property is still known: %v", err)
	}
	if v, err := d.Read("refuse"); err != nil || v.Int() != 4 {
		t.Errorf("the refused update's property: %#v, %v", v, err)
	}

	if err := d.Remove(); err != nil || r.removed != 1 {
		t.Fatalf("remove: %v (%d)", err, r.removed)
	}
	_, err = d.Read("n")
	code(t, "read after remove", err, wapper.ErrNotFound)
	if err := p.Close(); err != nil || r.removed != 2 {
		t.Errorf("close: %v, %d devices removed", err, r.removed)
	}
}

func TestDescriptionChecks(t *testing.T) {
	p := newPlugin(t, &recorder{})
	for _, d := range []sdktest.Description{
		{Properties: []sdktest.Property{{Name: "x", Type: "DECIMAL"}}},
		{Properties: []sdktest.Property{{Name: "x"}}},
		{Properties: []sdktest.Property{{Name: "x", Type: "INT", AccessMode: "WriteOnly"}}},
		{Properties: []sdktest.Property{{Name: "x", Type: "INT"}, {Name: "x", Type: "INT"}}},
		{ProtocolConfig: "[1,2]"},
		{ModelConfig: 42},
		{Properties: []sdktest.Property{{Name: "x", Type: "INT", Visitor: "not json"}}},
	} {
		if _, err := p.Add(d); err == nil {
			t.Errorf("%+v was accepted", d)
		}
	}
}

func TestAddJSON(t *testing.T) {
	r := &recorder{}
	p := newPlugin(t, r)
	// The example of abi/SPEC.md §8, with a field from a future minor.
	d, err := p.AddJSON([]byte(`{
	  "id": 7, "namespace": "default", "name": "thermo-1", "model": "thermo-model",
	  "protocol": "virtual", "protocolConfig": {"seed": 42}, "modelConfig": {},
	  "properties": [
	    {"handle": 0, "name": "temperature", "type": "DOUBLE", "accessMode": "ReadOnly",
	     "minimum": "0", "maximum": "100", "unit": "C",
	     "visitor": {"kind": "sine", "period": "60s"},
	     "collectCycle": 1000, "reportCycle": 1000},
	    {"handle": 1, "name": "switch", "type": "BOOLEAN", "accessMode": "ReadWrite",
	     "visitor": {"kind": "switch"}}
	  ],
	  "methods": [{"name": "toggle", "propertyNames": ["switch"]}],
	  "future": true
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.ID() != 7 || r.added[0] != "temperature,switch" {
		t.Fatalf("device %d, properties %q", d.ID(), r.added)
	}
	if v, err := d.Read("switch"); err != nil || v.Type() != wapper.TypeBoolean || !v.Bool() {
		t.Errorf("switch (handle 1 as INT, converted to BOOLEAN) = %#v, %v", v, err)
	}
	if _, err := p.AddJSON([]byte(`{"id":7}`)); err == nil {
		t.Error("a second device with id 7 was accepted")
	}
	if d2, err := p.Add(sdktest.Description{}); err != nil || d2.ID() != 8 {
		t.Errorf("next id after 7: %v, %v", d2, err)
	}
	if _, err := p.AddJSON([]byte(`{"id":`)); err == nil {
		t.Error("malformed JSON was accepted")
	}
	if err := d.UpdateJSON([]byte(`{"id":9,"name":"x"}`)); err == nil {
		t.Error("an update with another id was accepted")
	}
	if err := d.UpdateJSON([]byte(`{"id":7,"name":"thermo-1","properties":[{"handle":4,"name":"t","type":"STRING"}]}`)); err != nil {
		t.Fatal(err)
	}
	if v, err := d.Read("t"); err != nil || v.Str() != "4" {
		t.Errorf("after UpdateJSON: %#v, %v", v, err)
	}
}

func TestReadsLikeTheHost(t *testing.T) {
	r := &recorder{}
	p := newPlugin(t, r)
	d, err := p.Add(sdktest.Description{Properties: []sdktest.Property{
		{Name: "int-as-string", Type: "INT"},
		{Name: "bad-string", Type: "INT"},
		{Name: "fails", Type: "INT"},
		{Name: "panics", Type: "INT"},
		{Name: "plain", Type: "STRING"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := d.Read("int-as-string"); err != nil || v.Type() != wapper.TypeInt || v.Int() != 42 {
		t.Errorf("STRING 42 for an INT: %#v, %v", v, err)
	}
	_, err = d.Read("bad-string")
	code(t, "a STRING that is no INT", err, wapper.ErrInvalid)
	_, err = d.Read("fails")
	code(t, "driver error", err, wapper.ErrDeviceFailed)
	var we *wapper.Error
	if !errors.As(err, &we) || we.Message != "exception 2" {
		t.Errorf("error %#v: the message travels without the code", err)
	}
	_, err = d.Read("panics")
	code(t, "panic", err, wapper.ErrPanic)
	if !strings.Contains(err.Error(), "kaboom") {
		t.Errorf("panic error %q", err)
	}

	vals, errs, err := d.ReadBatch("plain", "fails", "int-as-string", "plain")
	if err != nil || r.batches != 1 {
		t.Fatalf("batch: %v (%d batches)", err, r.batches)
	}
	if vals[0].Str() != "4" || wapper.CodeOf(errs[1]) != wapper.ErrDeviceFailed || vals[2].Int() != 42 || errs[3] != nil {
		t.Errorf("batch = %v, %v", vals, errs)
	}
	_, _, err = d.ReadBatch("plain", "panics")
	code(t, "batch with a panic", err, wapper.ErrPanic)
	_, _, err = d.ReadBatch("plain", "nope")
	code(t, "batch with an unknown name", err, wapper.ErrNotFound)
}

func TestState(t *testing.T) {
	p := newPlugin(t, &recorder{})
	for model, want := range map[string]struct {
		s      wapper.State
		reason string
	}{
		"":        {wapper.StateOnline, ""},
		"offline": {wapper.StateOffline, "cable unplugged"},
		"broken":  {wapper.StateUnhealthy, "cannot tell"},
		"wrapped": {wapper.StateUnhealthy, "probe: timeout: no answer"},
	} {
		d, err := p.Add(sdktest.Description{Model: model})
		if err != nil {
			t.Fatal(err)
		}
		s, reason, err := d.State()
		if err != nil || s != want.s || reason != want.reason {
			t.Errorf("model %q: state %v %q, %v; want %v %q", model, s, reason, err, want.s, want.reason)
		}
		d.Remove()
		_, _, err = d.State()
		code(t, "state after remove", err, wapper.ErrNotFound)
	}
}

func TestMethodPollReports(t *testing.T) {
	r := &recorder{reportAt: "n"}
	p := newPlugin(t, r)
	d, err := p.Add(sdktest.Description{Properties: []sdktest.Property{
		{Name: "n", Type: "INT"}, {Name: "s", Type: "STRING"}, {Name: "b", Type: "BYTES"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// AddDevice reported: the device is known to the host by then.
	if got := d.Reports(); len(got) != 1 || got[0].Property != "n" || got[0].Value.Int() != 1 {
		t.Fatalf("reports from AddDevice: %v", got)
	}
	out, err := d.Call("echo", map[string]int{"a": 1})
	if err != nil || string(out) != `{"a":1}` {
		t.Errorf("echo = %s, %v", out, err)
	}
	if out, err := d.Call("echo", nil); err != nil || len(out) != 0 {
		t.Errorf("echo without args = %q, %v", out, err)
	}
	_, err = d.Call("other", `{}`)
	code(t, "unknown method", err, wapper.ErrNotFound)

	// Poll reports STRING "7" for every property: the INT and STRING are
	// converted, the BYTES one is refused (a base64 "7" is malformed), so
	// Report fails and Poll returns that error.
	_, err = d.Poll(time.Second)
	code(t, "poll whose report cannot be converted", err, wapper.ErrInvalid)
	got := d.Reports()
	if len(got) != 2 || got[0].Value.Type() != wapper.TypeInt || got[0].Value.Int() != 7 || got[1].Value.Str() != "7" {
		t.Errorf("reports %v", got)
	}
	if len(d.Reports()) != 0 {
		t.Error("Reports does not forget")
	}
	r.reportAt = ""
	d2, _ := p.Add(sdktest.Description{Properties: []sdktest.Property{{Name: "n", Type: "DOUBLE"}}})
	if next, err := d2.Poll(3 * time.Second); err != nil || next != 1500*time.Millisecond {
		t.Errorf("poll = %v, %v", next, err)
	}
	if got := d2.Reports(); len(got) != 1 || got[0].Value.Double() != 7 {
		t.Errorf("d2 reports %v", got)
	}
}

// minimal implements only Read, with Base: the SDK's defaults answer the
// rest, as the host would see them.
type minimal struct{ wapper.Base }

func (minimal) Read(*wapper.Device, *wapper.Property) (wapper.Value, error) {
	return wapper.Bool(true), nil
}

func TestDefaults(t *testing.T) {
	p, err := sdktest.New(minimal{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d, err := p.Add(sdktest.Description{Properties: []sdktest.Property{{Name: "x", Type: "BOOLEAN", AccessMode: "ReadWrite"}}})
	if err != nil {
		t.Fatal(err)
	}
	code(t, "Base.Write", d.Write("x", wapper.Bool(false)), wapper.ErrUnsupported)
	if s, reason, err := d.State(); s != wapper.StateOK || reason != "" || err != nil {
		t.Errorf("Base.State = %v %q %v", s, reason, err)
	}
	_, err = d.Call("m", nil)
	code(t, "no MethodCaller", err, wapper.ErrUnsupported)
	if next, err := d.Poll(time.Second); next != 0 || err != nil {
		t.Errorf("no Poller: %v, %v", next, err)
	}
	// Without a BatchReader, the SDK reads one property after another.
	vals, errs, err := d.ReadBatch("x", "x")
	if err != nil || !vals[0].Bool() || !vals[1].Bool() || errs[0] != nil || errs[1] != nil {
		t.Errorf("batch %v %v %v", vals, errs, err)
	}
}
