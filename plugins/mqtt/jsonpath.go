package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	wapper "wapper.dev/wapper/sdk-go"
)

// jsonPath is where a property's value sits in a device's JSON payload:
// member names separated by dots, each optionally followed by array
// indexes ("status.fan", "$.sensors[0].temp"). The path "$" is the whole
// payload.
type jsonPath struct {
	text  string
	steps []step // none: the whole payload
}

// step is one member name or array index.
type step struct {
	key   string
	index int // used when isIdx
	isIdx bool
}

// parsePath parses a jsonPath. A leading "$." (or "$") is optional.
func parsePath(s string) (jsonPath, error) {
	p := jsonPath{text: s}
	rest := strings.TrimSpace(s)
	switch {
	case rest == "$":
		return p, nil
	case strings.HasPrefix(rest, "$."):
		rest = rest[2:]
	case strings.HasPrefix(rest, "$["):
		rest = rest[1:]
	}
	if rest == "" {
		return p, fmt.Errorf("jsonPath %q is empty (use \"$\" for the whole payload)", s)
	}
	for _, part := range strings.Split(rest, ".") {
		name, idx, _ := strings.Cut(part, "[")
		if name == "" && (idx == "" || len(p.steps) > 0) {
			return p, fmt.Errorf("jsonPath %q has an empty member name", s)
		}
		if name != "" {
			p.steps = append(p.steps, step{key: name})
		}
		if idx == "" {
			continue
		}
		for _, ix := range strings.Split("["+idx, "[")[1:] {
			num, ok := strings.CutSuffix(ix, "]")
			n, err := strconv.Atoi(num)
			if !ok || err != nil || n < 0 {
				return p, fmt.Errorf("jsonPath %q: [%s is not an array index such as [0]", s, ix)
			}
			p.steps = append(p.steps, step{index: n, isIdx: true})
		}
	}
	return p, nil
}

// whole reports whether the path is the whole payload.
func (p jsonPath) whole() bool { return len(p.steps) == 0 }

// hasIndex reports whether the path goes through an array.
func (p jsonPath) hasIndex() bool {
	for _, s := range p.steps {
		if s.isIdx {
			return true
		}
	}
	return false
}

// decodeJSON decodes a payload, keeping numbers as json.Number so that
// integers keep every digit.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

// lookup returns the value at p in doc, and whether it is there.
func (p jsonPath) lookup(doc any) (any, bool) {
	for _, s := range p.steps {
		switch v := doc.(type) {
		case map[string]any:
			if s.isIdx {
				return nil, false
			}
			x, ok := v[s.key]
			if !ok {
				return nil, false
			}
			doc = x
		case []any:
			if !s.isIdx || s.index >= len(v) {
				return nil, false
			}
			doc = v[s.index]
		default:
			return nil, false
		}
	}
	return doc, true
}

// valueOf converts a JSON value to the property's type t, as the host
// converts a reading (abi/SPEC.md §4): numbers between each other when
// nothing is lost, booleans and numbers, strings parsed as t, anything to
// STRING (objects and arrays as their JSON text).
func valueOf(x any, t wapper.Type) (wapper.Value, error) {
	var v wapper.Value
	switch x := x.(type) {
	case nil:
		return wapper.Value{}, fmt.Errorf("the value is null")
	case json.Number:
		if t == wapper.TypeString {
			return wapper.String(x.String()), nil
		}
		if i, err := strconv.ParseInt(x.String(), 10, 64); err == nil {
			v = wapper.Int(i)
		} else if f, err := strconv.ParseFloat(x.String(), 64); err == nil {
			v = wapper.Double(f)
		} else {
			return wapper.Value{}, fmt.Errorf("%s is not a number this plugin can read", x)
		}
	case string:
		v = wapper.String(x)
		if t != wapper.TypeString {
			pv, err := wapper.ParseText(t, x)
			if err != nil {
				return wapper.Value{}, fmt.Errorf("%q is not a %s", x, t)
			}
			return pv, nil
		}
		return v, nil
	case bool:
		v = wapper.Bool(x)
	default:
		if t != wapper.TypeString {
			return wapper.Value{}, fmt.Errorf("the value is a JSON %s, not a %s", kindOf(x), t)
		}
		b, err := json.Marshal(x)
		if err != nil {
			return wapper.Value{}, err
		}
		return wapper.String(string(b)), nil
	}
	out, err := wapper.Convert(v, t)
	if err != nil {
		return wapper.Value{}, fmt.Errorf("%s does not fit the property's type %s", v.Text(), t)
	}
	return out, nil
}

func kindOf(x any) string {
	if _, ok := x.([]any); ok {
		return "array"
	}
	return "object"
}

// jsonValue returns the JSON form of a value written to a device: numbers
// as numbers, booleans as booleans, anything else as a string.
func jsonValue(v wapper.Value) (json.RawMessage, error) {
	switch v.Type() {
	case wapper.TypeInt:
		return json.RawMessage(strconv.FormatInt(v.Int(), 10)), nil
	case wapper.TypeFloat, wapper.TypeDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%s cannot be sent as JSON", v.Text())
		}
		return json.RawMessage(v.Text()), nil
	case wapper.TypeBoolean:
		return json.RawMessage(strconv.FormatBool(v.Bool())), nil
	}
	return json.Marshal(v.Text())
}

// command returns the payload that sets the value at p to v: the value
// alone for the whole payload, else nested objects ({"a": {"b": v}}).
func (p jsonPath) command(v wapper.Value) ([]byte, error) {
	if p.hasIndex() {
		return nil, fmt.Errorf("jsonPath %q goes through an array and cannot be written", p.text)
	}
	val, err := jsonValue(v)
	if err != nil {
		return nil, err
	}
	if p.whole() {
		if v.Type() == wapper.TypeString || v.Type() == wapper.TypeBytes || v.Type() == wapper.TypeStream {
			return []byte(v.Text()), nil // a bare string payload, as devices send it
		}
		return val, nil
	}
	out := json.RawMessage(val)
	for i := len(p.steps) - 1; i >= 0; i-- {
		k, err := json.Marshal(p.steps[i].key)
		if err != nil {
			return nil, err
		}
		out = append(append(append(append([]byte("{"), k...), ':'), out...), '}')
	}
	return out, nil
}
