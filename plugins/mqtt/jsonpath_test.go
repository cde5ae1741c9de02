package main

import (
	"strings"
	"testing"

	wapper "wapper.dev/wapper/sdk-go"
)

func TestPathLookup(t *testing.T) {
	doc, err := decodeJSON([]byte(`{"temperature": 21.5, "big": 9007199254740993, "status": {"fan": "on", "list": [1, {"x": true}]}, "a.b": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		typ  wapper.Type
		want string // the value's text, or "!" plus an error's text, or "-" when absent
	}{
		{"temperature", wapper.TypeDouble, "21.5"},
		{"$.temperature", wapper.TypeDouble, "21.5"},
		{"temperature", wapper.TypeString, "21.5"},
		{"temperature", wapper.TypeInt, "!does not fit"},
		{"big", wapper.TypeInt, "9007199254740993"},
		{"status.fan", wapper.TypeString, "on"},
		{"status.fan", wapper.TypeBoolean, "true"},
		{"status.list[0]", wapper.TypeInt, "1"},
		{"status.list[1].x", wapper.TypeBoolean, "true"},
		{"$.status.list[1]", wapper.TypeString, `{"x":true}`},
		{"status", wapper.TypeInt, "!JSON object"},
		{"status.list[2]", wapper.TypeInt, "-"},
		{"missing", wapper.TypeInt, "-"},
		{"temperature.x", wapper.TypeInt, "-"},
	} {
		p, err := parsePath(c.path)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		x, ok := p.lookup(doc)
		got := "-"
		if ok {
			v, err := valueOf(x, c.typ)
			if err != nil {
				got = "!" + err.Error()
			} else {
				got = v.Text()
			}
		}
		if got != c.want && !(strings.HasPrefix(c.want, "!") && strings.Contains(got, c.want[1:])) {
			t.Errorf("%s as %s = %q, want %q", c.path, c.typ, got, c.want)
		}
	}
}

func TestParsePathErrors(t *testing.T) {
	for _, s := range []string{"", "$.", "a..b", "a.[0]", "a[x]", "a[0", "a[-1]"} {
		if _, err := parsePath(s); err == nil {
			t.Errorf("path %q accepted", s)
		}
	}
	p, err := parsePath("$")
	if err != nil || !p.whole() {
		t.Fatalf("$: %+v %v", p, err)
	}
	p, err = parsePath("$[1][2]")
	if err != nil || len(p.steps) != 2 || !p.hasIndex() {
		t.Fatalf("$[1][2]: %+v %v", p, err)
	}
}

func TestCommand(t *testing.T) {
	for _, c := range []struct {
		path string
		v    wapper.Value
		want string
	}{
		{"setpoint", wapper.Int(30), `{"setpoint":30}`},
		{"$.setpoint", wapper.Double(22.25), `{"setpoint":22.25}`},
		{"status.fan", wapper.String("on"), `{"status":{"fan":"on"}}`},
		{"on", wapper.Bool(true), `{"on":true}`},
		{"f", wapper.Float(0.1), `{"f":0.1}`},
		{"b", wapper.Bytes([]byte{1, 2}), `{"b":"AQI="}`},
		{"$", wapper.Int(5), `5`},
		{"$", wapper.String("ON"), `ON`},
		{`we"ird`, wapper.Int(1), `{"we\"ird":1}`},
	} {
		p, err := parsePath(c.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.command(c.v)
		if err != nil || string(got) != c.want {
			t.Errorf("command(%s, %#v) = %s, %v; want %s", c.path, c.v, got, err, c.want)
		}
	}
	p, _ := parsePath("a[0]")
	if _, err := p.command(wapper.Int(1)); err == nil {
		t.Errorf("a path through an array was written")
	}
	p, _ = parsePath("x")
	if _, err := p.command(wapper.Double(1.0 / zero())); err == nil {
		t.Errorf("+Inf was sent as JSON")
	}
}

func zero() float64 { return 0 }
