package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"wapper.dev/wapper/abi"
	wapper "wapper.dev/wapper/sdk-go"
)

// dataType says how the registers of a property hold its value.
type dataType struct {
	name string
	regs int // registers it takes; 0: any (string, bytes)
	kind byte
}

// Kinds of data types.
const (
	kSigned = iota
	kUnsigned
	kFloat
	kBool
	kString
	kBytes
)

var dataTypes = map[string]dataType{
	"int16": {"int16", 1, kSigned}, "uint16": {"uint16", 1, kUnsigned},
	"int32": {"int32", 2, kSigned}, "uint32": {"uint32", 2, kUnsigned},
	"int64": {"int64", 4, kSigned}, "uint64": {"uint64", 4, kUnsigned},
	"float32": {"float32", 2, kFloat}, "float64": {"float64", 4, kFloat},
	"float": {"float32", 2, kFloat}, "double": {"float64", 4, kFloat},
	"boolean": {"boolean", 1, kBool}, "bool": {"boolean", 1, kBool},
	"string": {"string", 0, kString}, "bytes": {"bytes", 0, kBytes},
}

// pickType chooses the data type from the visitor's dataType or, when it
// is absent, from the property type and limit.
func pickType(name string, bits bool, t wapper.Type, limit int) (dataType, error) {
	if bits {
		if name != "" && !strings.EqualFold(name, "boolean") && !strings.EqualFold(name, "bool") {
			return dataType{}, fmt.Errorf("dataType %q: coils and discrete inputs hold booleans", name)
		}
		return dataTypes["boolean"], nil
	}
	if name != "" {
		lower := strings.ToLower(name)
		if lower == "int" { // KubeEdge's "int": unsigned, as wide as limit
			switch limit {
			case 0, 1:
				return dataTypes["uint16"], nil
			case 2:
				return dataTypes["uint32"], nil
			case 4:
				return dataTypes["uint64"], nil
			}
			return dataType{}, fmt.Errorf("dataType int takes limit 1, 2 or 4, not %d", limit)
		}
		dt, ok := dataTypes[lower]
		if !ok {
			return dataType{}, fmt.Errorf("dataType %q: want int16, uint16, int32, uint32, int64, uint64, float32, float64, boolean, string or bytes", name)
		}
		return dt, nil
	}
	switch t {
	case wapper.TypeBoolean:
		return dataTypes["boolean"], nil
	case wapper.TypeString:
		return dataTypes["string"], nil
	case wapper.TypeBytes, wapper.TypeStream:
		return dataTypes["bytes"], nil
	}
	// Numbers: the width follows limit; without one, FLOAT and DOUBLE
	// properties are IEEE floats and INT a signed register. A FLOAT or
	// DOUBLE on one register is a scaled integer.
	float := t == wapper.TypeFloat || t == wapper.TypeDouble
	switch {
	case limit == 0 && t == wapper.TypeFloat, limit == 2 && float:
		return dataTypes["float32"], nil
	case limit == 0 && t == wapper.TypeDouble, limit == 4 && float:
		return dataTypes["float64"], nil
	}
	switch limit {
	case 0, 1:
		return dataTypes["int16"], nil
	case 2:
		return dataTypes["int32"], nil
	case 4:
		return dataTypes["int64"], nil
	}
	return dataType{}, fmt.Errorf("set dataType: limit %d has no default integer type", limit)
}

// reorder applies isRegisterSwap (reverse the order of the registers) and
// isSwap (swap the two bytes of each register) in place. Both are their
// own inverse, so the same call maps device order to big-endian value
// order and back.
func reorder(b []byte, isSwap, isRegisterSwap bool) {
	if isRegisterSwap {
		for i, j := 0, len(b)-2; i < j; i, j = i+2, j-2 {
			b[i], b[j] = b[j], b[i]
			b[i+1], b[j+1] = b[j+1], b[i+1]
		}
	}
	if isSwap {
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	}
}

// decode turns raw register bytes (as read, big-endian registers) into the
// property's value.
func (v *visitor) decode(raw []byte, t wapper.Type) (wapper.Value, error) {
	b := append([]byte(nil), raw...)
	reorder(b, v.isSwap, v.isRegisterSwap)
	var f float64
	var isInt bool
	var i int64
	switch v.dataType.kind {
	case kBool:
		on := false
		for _, c := range b {
			on = on || c != 0
		}
		return wapper.Convert(wapper.Bool(on), t)
	case kString:
		return wapper.Convert(wapper.String(strings.TrimRight(string(b), "\x00 ")), t)
	case kBytes:
		return wapper.Convert(wapper.Bytes(b), t)
	case kSigned:
		switch len(b) {
		case 2:
			i = int64(int16(binary.BigEndian.Uint16(b)))
		case 4:
			i = int64(int32(binary.BigEndian.Uint32(b)))
		case 8:
			i = int64(binary.BigEndian.Uint64(b))
		}
		isInt, f = true, float64(i)
	case kUnsigned:
		var u uint64
		switch len(b) {
		case 2:
			u = uint64(binary.BigEndian.Uint16(b))
		case 4:
			u = uint64(binary.BigEndian.Uint32(b))
		case 8:
			u = binary.BigEndian.Uint64(b)
		}
		i, isInt, f = int64(u), true, float64(u)
	case kFloat:
		if len(b) == 4 {
			f = float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
		} else {
			f = math.Float64frombits(binary.BigEndian.Uint64(b))
		}
	}
	if v.scale != 1 {
		f *= v.scale
		isInt = false
	}
	switch t {
	case wapper.TypeInt:
		if isInt {
			return wapper.Int(i), nil
		}
		return wapper.Int(int64(math.Round(f))), nil
	case wapper.TypeFloat:
		if v.dataType.name == "float32" && v.scale == 1 {
			return wapper.Float(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
		}
		return wapper.Float(float32(f)), nil
	case wapper.TypeBoolean:
		return wapper.Bool(f != 0), nil
	case wapper.TypeString:
		if isInt {
			return wapper.Convert(wapper.Int(i), t)
		}
		return wapper.Convert(wapper.Double(f), t)
	}
	if isInt && t != wapper.TypeDouble {
		return wapper.Convert(wapper.Int(i), t)
	}
	return wapper.Convert(wapper.Double(f), t)
}

// encode turns a value into register bytes in device order, for a write.
func (v *visitor) encode(val wapper.Value) ([]byte, error) {
	n := int(v.limit) * 2
	b := make([]byte, n)
	switch v.dataType.kind {
	case kBool:
		bv, err := wapper.Convert(val, wapper.TypeBoolean)
		if err != nil {
			return nil, err
		}
		if bv.Bool() {
			b[n-1] = 1
		}
	case kString, kBytes:
		var src []byte
		if val.Type() == wapper.TypeString {
			src = []byte(val.Str())
		} else {
			src = val.Bytes()
		}
		if len(src) > n {
			return nil, fmt.Errorf("%d bytes do not fit %d registers", len(src), v.limit)
		}
		copy(b, src)
	default:
		dv, err := wapper.Convert(val, wapper.TypeDouble)
		if err != nil {
			return nil, err
		}
		f := dv.Double() / v.scale
		switch v.dataType.kind {
		case kFloat:
			if n == 4 {
				binary.BigEndian.PutUint32(b, math.Float32bits(float32(f)))
			} else {
				binary.BigEndian.PutUint64(b, math.Float64bits(f))
			}
		default:
			r := math.Round(f)
			if val.Type() == wapper.TypeInt && v.scale == 1 {
				r = float64(val.Int())
			}
			lo, hi := intRange(v.dataType)
			if r < lo || r > hi {
				return nil, fmt.Errorf("%v is outside the range of %s", r, v.dataType.name)
			}
			var u uint64
			if v.dataType.kind == kSigned {
				u = uint64(int64(r))
			} else {
				u = uint64(r)
			}
			if val.Type() == wapper.TypeInt && v.scale == 1 {
				u = uint64(val.Int())
			}
			switch n {
			case 2:
				binary.BigEndian.PutUint16(b, uint16(u))
			case 4:
				binary.BigEndian.PutUint32(b, uint32(u))
			case 8:
				binary.BigEndian.PutUint64(b, u)
			}
		}
	}
	reorder(b, v.isSwap, v.isRegisterSwap)
	return b, nil
}

func intRange(dt dataType) (lo, hi float64) {
	bits := dt.regs * 16
	if dt.kind == kSigned {
		return -math.Pow(2, float64(bits-1)), math.Pow(2, float64(bits-1)) - 1
	}
	return 0, math.Pow(2, float64(bits)) - 1
}

// abiCode returns the status code an error carries.
func abiCode(err error) wapper.Code { return abi.CodeOf(err) }
