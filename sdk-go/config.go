package wapper

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Config is a configData object, member by member: a Device's protocol
// configData, a DeviceModel's protocolConfigData, a property's visitor, or
// the plugin config. Decode one with [Device.ProtocolConfig],
// [Property.Visit] or json.Unmarshal, and read its numbers with
// [Config.Int] and [Config.Float]:
//
//	var cfg wapper.Config
//	if err := d.ProtocolConfig(&cfg); err != nil {
//		return err
//	}
//	port, err := cfg.Int("port", 502)
//
// KubeEdge passes configData numbers loosely: edgecore sends them as JSON
// numbers narrowed to 32-bit floats (502 arrives as 502, but 123456789 as
// 123456790), or as strings ("502"). Int and Float accept both forms and
// refuse what would lose information. Narrowing itself cannot be
// detected: an integer above 2^24 (16777216) may arrive rounded, so such
// values are best written as strings in the YAML.
//
// A name matches a member as encoding/json matches struct fields: exactly,
// else ignoring case.
type Config map[string]json.RawMessage

// lookup returns the member called name, or nil.
func (c Config) lookup(name string) json.RawMessage {
	if v, ok := c[name]; ok {
		return v
	}
	for k, v := range c {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// number returns the numeric text of member name: a JSON number, or the
// trimmed content of a string. ok is false when the member is absent,
// null or an empty string.
func (c Config) number(name string) (text string, ok bool, err error) {
	raw := strings.TrimSpace(string(c.lookup(name)))
	switch {
	case raw == "" || raw == "null":
		return "", false, nil
	case raw[0] == '"':
		var s string
		if json.Unmarshal([]byte(raw), &s) != nil {
			return "", false, configErr(name, raw, "is not a number")
		}
		s = strings.TrimSpace(s)
		if s == "" {
			return "", false, nil
		}
		if !decimal(s) {
			return "", false, configErr(name, raw, "is not a number")
		}
		return s, true, nil
	case (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') && decimal(raw):
		return raw, true, nil
	}
	return "", false, configErr(name, raw, "is not a number")
}

// decimal reports whether s has only the characters of a decimal number,
// so that strconv does not take "Inf", "NaN" or hexadecimal.
func decimal(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			return false
		}
	}
	return true
}

func configErr(name, raw, what string) error {
	if len(raw) > 64 {
		raw = raw[:61] + "..."
	}
	return &configError{fmt.Sprintf("field %q: %s %s", name, raw, what)}
}

// configError is a bad Config member. Its text names the field without a
// code name, so that it reads well inside another message; its code,
// found through Unwrap, is ErrInvalid.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func (e *configError) Unwrap() error { return &Error{Code: ErrInvalid, Message: e.msg} }

// Int returns the integer member name, or def when it is absent, null or
// "". It accepts a JSON number or a string holding one ("502", "5e2"),
// and fails with an ErrInvalid error naming the field when the value is
// not a number, not a whole number (1.5), or outside the int64 range. The
// error's text names the field without the code ("field \"port\": 1.5 is
// not a whole number"), to be wrapped in a message of the plugin's own;
// [CodeOf] finds ErrInvalid in it.
func (c Config) Int(name string, def int64) (int64, error) {
	s, ok, err := c.number(name)
	if !ok {
		return def, err
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil && !isRange(err):
		return 0, configErr(name, s, "is not a number")
	case err != nil || f < math.MinInt64 || f >= math.MaxInt64:
		return 0, configErr(name, s, "is out of range")
	case f != math.Trunc(f) || f == 0 && strings.ContainsAny(mantissa(s), "123456789"):
		// (The second case is a fraction too small for a float64: 1e-400.)
		return 0, configErr(name, s, "is not a whole number")
	}
	return int64(f), nil
}

// Float returns the number member name, or def when it is absent, null
// or "". It accepts a JSON number or a string holding one ("0.5",
// "1e-3"), and fails with an ErrInvalid error naming the field when the
// value is not a number or beyond the float64 range.
func (c Config) Float(name string, def float64) (float64, error) {
	s, ok, err := c.number(name)
	if !ok {
		return def, err
	}
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil && !isRange(err):
		return 0, configErr(name, s, "is not a number")
	case err != nil:
		return 0, configErr(name, s, "is out of range")
	}
	return f, nil
}

// mantissa returns s up to its exponent.
func mantissa(s string) string {
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		return s[:i]
	}
	return s
}

func isRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// Flag is a bool in configData, which KubeEdge's tools write either as
// true/false or as "true"/"false" (any strconv.ParseBool spelling, and ""
// for false). Use it for the boolean fields of a configData struct.
type Flag bool

// UnmarshalJSON reads a JSON bool or a string that spells one.
func (f *Flag) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil && s != "" {
			return fmt.Errorf("%q is not true or false", s)
		}
		*f = Flag(v)
		return nil
	}
	var v bool
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%s is not true or false", b)
	}
	*f = Flag(v)
	return nil
}
