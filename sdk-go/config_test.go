package wapper

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestConfigNumbers(t *testing.T) {
	var cfg Config
	err := json.Unmarshal([]byte(`{
		"port": 502, "portText": " 502 ", "narrowed": 1.2345679e+08, "exp": "5e2", "neg": -7,
		"half": 1.5, "halfText": "1.5", "word": "abc", "flag": true, "obj": {}, "list": [1],
		"empty": "", "null": null, "huge": 1e19, "hugeText": "99999999999999999999",
		"min": -9223372036854775808, "max": "9223372036854775807", "tiny": 1e-400, "inf": "Inf",
		"nan": "NaN", "hex": "0x10", "over": 1e400, "SlaveID": 3, "plus": "+4", "lead": "0502"
	}`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	ints := map[string]int64{
		"port": 502, "portText": 502, "narrowed": 123456790, "exp": 500, "neg": -7,
		"min": math.MinInt64, "max": math.MaxInt64, "absent": 99, "empty": 99, "null": 99,
		"slaveID": 3, "plus": 4, "lead": 502,
	}
	for name, want := range ints {
		if got, err := cfg.Int(name, 99); err != nil || got != want {
			t.Errorf("Int(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	for name, want := range map[string]string{
		"half":     `field "half": 1.5 is not a whole number`,
		"halfText": `field "halfText": 1.5 is not a whole number`,
		"word":     `field "word": "abc" is not a number`,
		"flag":     `field "flag": true is not a number`,
		"obj":      `field "obj": {} is not a number`,
		"list":     `field "list": [1] is not a number`,
		"huge":     `field "huge": 1e19 is out of range`,
		"hugeText": `field "hugeText": 99999999999999999999 is out of range`,
		"inf":      `field "inf": "Inf" is not a number`,
		"nan":      `field "nan": "NaN" is not a number`,
		"hex":      `field "hex": "0x10" is not a number`,
		"over":     `field "over": 1e400 is out of range`,
		"tiny":     `field "tiny": 1e-400 is not a whole number`,
	} {
		_, err := cfg.Int(name, 0)
		if err == nil || err.Error() != want {
			t.Errorf("Int(%q): %v, want %s", name, err, want)
		}
		if CodeOf(err) != ErrInvalid {
			t.Errorf("Int(%q): code %v", name, CodeOf(err))
		}
	}
	floats := map[string]float64{"port": 502, "halfText": 1.5, "half": 1.5, "exp": 500, "huge": 1e19, "tiny": 0, "absent": 0.25, "null": 0.25}
	for name, want := range floats {
		if got, err := cfg.Float(name, 0.25); err != nil || got != want {
			t.Errorf("Float(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	for _, name := range []string{"word", "flag", "inf", "nan", "over", "hex"} {
		if _, err := cfg.Float(name, 0); CodeOf(err) != ErrInvalid || !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("Float(%q): %v", name, err)
		}
	}
	// Wrapped in a plugin's own message, the text reads once and the code
	// stays.
	_, err = cfg.Int("half", 0)
	w := Errorf(ErrInvalid, "device ns/d: protocol configData: %v", err)
	if w.Error() != `invalid argument: device ns/d: protocol configData: field "half": 1.5 is not a whole number` {
		t.Errorf("wrapped: %v", w)
	}
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != ErrInvalid {
		t.Errorf("errors.As(*Error): %v", err)
	}
	// A nil Config has nothing.
	if v, err := Config(nil).Int("x", 5); v != 5 || err != nil {
		t.Errorf("nil Config: %d, %v", v, err)
	}
	// Exact names win over names that differ in case.
	both := Config{"port": json.RawMessage("1"), "Port": json.RawMessage("2")}
	if v, _ := both.Int("Port", 0); v != 2 {
		t.Errorf("exact match: %d", v)
	}
}

func TestConfigFromDevice(t *testing.T) {
	d := &Device{}
	d.Device.ProtocolConfig = json.RawMessage(`{"port":"1502"}`)
	d.Device.Properties = append(d.Device.Properties, Property{}.Property)
	d.Device.Properties[0].Visitor = json.RawMessage(`{"offset":"3"}`)
	var pc, vc Config
	if err := d.ProtocolConfig(&pc); err != nil {
		t.Fatal(err)
	}
	if err := d.Properties()[0].Visit(&vc); err != nil {
		t.Fatal(err)
	}
	if port, _ := pc.Int("port", 0); port != 1502 {
		t.Errorf("port %d", port)
	}
	if off, _ := vc.Int("offset", 0); off != 3 {
		t.Errorf("offset %d", off)
	}
}

func TestFlag(t *testing.T) {
	var v struct {
		A, B, C, D Flag
	}
	if err := json.Unmarshal([]byte(`{"A": true, "B": "true", "C": "", "D": "0"}`), &v); err != nil || !v.A || !v.B || v.C || v.D {
		t.Fatalf("%+v, %v", v, err)
	}
	for _, bad := range []string{`{"A": "yes"}`, `{"A": 1}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
