package abi

import (
	"math"
	"regexp"
	"strings"
	"testing"
)

// edgecoreValue is edgecore's twin value check (dtcommon.ValidateTwinValue
// in KubeEdge v1.23).
var edgecoreValue = regexp.MustCompile(`^[a-zA-Z0-9-_.,:/@#]{1,512}$`)

// TestTextPlainDecimal: numbers print as plain decimals that edgecore
// accepts, and parse back to the same bits.
func TestTextPlainDecimal(t *testing.T) {
	cases := []struct {
		v    Value
		want string
	}{
		{Double(2500000.5), "2500000.5"},
		{Double(-2500000.5), "-2500000.5"},
		{Double(1e21), "1000000000000000000000"},
		{Double(1e-7), "0.0000001"},
		{Double(-1.5e-7), "-0.00000015"},
		{Double(0.1), "0.1"},
		{Double(0), "0"},
		{Double(math.Copysign(0, -1)), "-0"},
		{Double(math.Inf(1)), "Inf"},
		{Double(math.Inf(-1)), "-Inf"},
		{Double(math.NaN()), "NaN"},
		{Float(1e20), "100000000000000000000"},
		{Float(0.1), "0.1"},
		{Float(16777216), "16777216"},
		{Float(-3.25), "-3.25"},
		{Float(float32(math.Inf(1))), "Inf"},
		{Float(float32(math.Copysign(0, -1))), "-0"},
		{Int(-42), "-42"},
	}
	for _, c := range cases {
		if got := c.v.Text(); got != c.want {
			t.Errorf("%v text %q, want %q", c.v.Type(), got, c.want)
		}
	}
	extremes := []Value{
		Double(math.MaxFloat64), Double(-math.MaxFloat64), Double(math.SmallestNonzeroFloat64),
		Double(-math.SmallestNonzeroFloat64), Double(2.2250738585072014e-308), Double(123456789.123456789),
		Double(math.Copysign(0, -1)), Double(math.Inf(1)), Double(math.Inf(-1)),
		Float(math.MaxFloat32), Float(-math.MaxFloat32), Float(math.SmallestNonzeroFloat32),
		Float(1.1754944e-38), Float(float32(math.Copysign(0, -1))), Float(float32(math.Inf(-1))), Float(1e20),
	}
	for _, v := range extremes {
		s := v.Text()
		if !edgecoreValue.MatchString(s) {
			t.Errorf("%v %g: text %q fails edgecore's value check", v.Type(), v.Double(), s)
		}
		back, err := ParseText(v.Type(), s)
		if err != nil || !back.Equal(v) {
			t.Errorf("%v %g: text %q parses as %#v, %v", v.Type(), v.Double(), s, back, err)
		}
	}
	// NaN keeps its type and NaN-ness.
	for _, v := range []Value{Double(math.NaN()), Float(float32(math.NaN()))} {
		back, err := ParseText(v.Type(), v.Text())
		if err != nil || !math.IsNaN(back.Double()) || back.Type() != v.Type() {
			t.Errorf("%#v parses back as %#v, %v", v, back, err)
		}
	}
	// The old exponent forms still parse.
	for s, want := range map[string]Value{"2.5000005e+06": Double(2500000.5), "1e+20": Float(1e20), "+Inf": Double(math.Inf(1)), "1E-7": Double(1e-7)} {
		if v, err := ParseText(want.Type(), s); err != nil || !v.Equal(want) {
			t.Errorf("ParseText(%v, %q) = %#v, %v", want.Type(), s, v, err)
		}
	}
}

// TestParseTextBase64Alphabets: BYTES and STREAM accept standard and
// URL-safe base64, padded or not; Text stays standard and padded.
func TestParseTextBase64Alphabets(t *testing.T) {
	raw := []byte{0xfb, 0xff, 0xbf, 'h', 'i'}
	for _, s := range []string{"+/+/aGk=", "+/+/aGk", "-_-_aGk=", "-_-_aGk"} {
		for _, ty := range []Type{TypeBytes, TypeStream} {
			v, err := ParseText(ty, s)
			if err != nil || string(v.Bytes()) != string(raw) || v.Type() != ty {
				t.Errorf("ParseText(%v, %q) = %#v, %v", ty, s, v, err)
			}
		}
	}
	if got := Bytes(raw).Text(); got != "+/+/aGk=" {
		t.Errorf("Text %q, want standard padded base64", got)
	}
	for _, s := range []string{"+/-_", "aGk==", "aG=k", "a", "aGk*"} {
		if v, err := ParseText(TypeBytes, s); err == nil {
			t.Errorf("ParseText(BYTES, %q) = %#v, want an error", s, v)
		}
	}
	for n := range 40 {
		b := []byte(strings.Repeat("\xfa\x03?", n))[:n]
		v := Bytes(b)
		for _, s := range []string{v.Text(), strings.TrimRight(v.Text(), "="), strings.NewReplacer("+", "-", "/", "_").Replace(v.Text())} {
			back, err := ParseText(TypeBytes, s)
			if err != nil || !back.Equal(v) {
				t.Errorf("%d bytes: %q parses as %#v, %v", n, s, back, err)
			}
		}
	}
}

// TestTwinType: edgecore's spellings of the twin types.
func TestTwinType(t *testing.T) {
	want := map[Type]string{TypeInt: "int", TypeFloat: "float", TypeDouble: "float", TypeBoolean: "boolean",
		TypeString: "string", TypeBytes: "string", TypeStream: "string", TypeInvalid: "string"}
	for ty, w := range want {
		if got := ty.TwinType(); got != w {
			t.Errorf("%v.TwinType() = %q, want %q", ty, got, w)
		}
	}
}
