package main

// Values between OPC UA Variants and wapper values.

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	wapper "wapper.dev/wapper/sdk-go"
)

// typeByName are the built-in types a visitor's dataType may name, in
// lower case.
var typeByName = map[string]ua.TypeID{
	"boolean":       ua.TypeIDBoolean,
	"sbyte":         ua.TypeIDSByte,
	"byte":          ua.TypeIDByte,
	"int16":         ua.TypeIDInt16,
	"uint16":        ua.TypeIDUint16,
	"int32":         ua.TypeIDInt32,
	"uint32":        ua.TypeIDUint32,
	"int64":         ua.TypeIDInt64,
	"uint64":        ua.TypeIDUint64,
	"float":         ua.TypeIDFloat,
	"double":        ua.TypeIDDouble,
	"string":        ua.TypeIDString,
	"datetime":      ua.TypeIDDateTime,
	"bytestring":    ua.TypeIDByteString,
	"localizedtext": ua.TypeIDLocalizedText,
}

var canonical = map[ua.TypeID]string{
	ua.TypeIDBoolean: "Boolean", ua.TypeIDSByte: "SByte", ua.TypeIDByte: "Byte",
	ua.TypeIDInt16: "Int16", ua.TypeIDUint16: "UInt16", ua.TypeIDInt32: "Int32",
	ua.TypeIDUint32: "UInt32", ua.TypeIDInt64: "Int64", ua.TypeIDUint64: "UInt64",
	ua.TypeIDFloat: "Float", ua.TypeIDDouble: "Double", ua.TypeIDString: "String",
	ua.TypeIDDateTime: "DateTime", ua.TypeIDByteString: "ByteString", ua.TypeIDLocalizedText: "LocalizedText",
}

func typeNames() string {
	var names []string
	for _, n := range canonical {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func typeName(t ua.TypeID) string {
	if n, ok := canonical[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", t)
}

// fromVariant converts a read or notified value. Numbers keep their kind,
// text types become STRING, a ByteString BYTES, a DateTime RFC 3339 text,
// and arrays JSON text; the host then converts to the property's type.
func fromVariant(v *ua.Variant) (wapper.Value, error) {
	if v == nil || v.Value() == nil {
		return wapper.Value{}, fmt.Errorf("the node has no value (null)")
	}
	return fromGo(v.Value())
}

func fromGo(x any) (wapper.Value, error) {
	switch x := x.(type) {
	case bool:
		return wapper.Bool(x), nil
	case int8:
		return wapper.Int(int64(x)), nil
	case uint8:
		return wapper.Int(int64(x)), nil
	case int16:
		return wapper.Int(int64(x)), nil
	case uint16:
		return wapper.Int(int64(x)), nil
	case int32:
		return wapper.Int(int64(x)), nil
	case uint32:
		return wapper.Int(int64(x)), nil
	case int64:
		return wapper.Int(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return wapper.String(fmt.Sprint(x)), nil
		}
		return wapper.Int(int64(x)), nil
	case float32:
		return wapper.Float(x), nil
	case float64:
		return wapper.Double(x), nil
	case string:
		return wapper.String(x), nil
	case []byte:
		return wapper.Bytes(x), nil
	case time.Time:
		return wapper.String(x.UTC().Format(time.RFC3339Nano)), nil
	case *ua.LocalizedText:
		return wapper.String(x.Text), nil
	case *ua.QualifiedName:
		return wapper.String(fmt.Sprintf("%d:%s", x.NamespaceIndex, x.Name)), nil
	case *ua.NodeID:
		return wapper.String(x.String()), nil
	case *ua.ExpandedNodeID:
		return wapper.String(x.String()), nil
	case *ua.GUID:
		return wapper.String(x.String()), nil
	case ua.XMLElement:
		return wapper.String(string(x)), nil
	case ua.StatusCode:
		return wapper.Int(int64(x)), nil
	case ua.ByteArray:
		return wapper.Bytes([]byte(x)), nil
	}
	// Arrays (and anything else) as JSON.
	b, err := json.Marshal(jsonable(x))
	if err != nil {
		return wapper.Value{}, fmt.Errorf("a %T value cannot be converted: %v", x, err)
	}
	return wapper.String(string(b)), nil
}

// jsonable turns OPC UA types inside arrays into JSON-friendly values.
func jsonable(x any) any {
	switch x := x.(type) {
	case []*ua.LocalizedText:
		out := make([]string, len(x))
		for i, t := range x {
			if t != nil {
				out[i] = t.Text
			}
		}
		return out
	case []time.Time:
		out := make([]string, len(x))
		for i, t := range x {
			out[i] = t.UTC().Format(time.RFC3339Nano)
		}
		return out
	}
	return x
}

// toVariant converts a value to write into the node's built-in type.
func toVariant(v wapper.Value, t ua.TypeID) (*ua.Variant, error) {
	conv := func(want wapper.Type) (wapper.Value, error) { return wapper.Convert(v, want) }
	integer := func(lo, hi float64) (int64, error) {
		iv, err := conv(wapper.TypeInt)
		if err != nil {
			return 0, err
		}
		n := iv.Int()
		if float64(n) < lo || float64(n) > hi {
			return 0, fmt.Errorf("%d does not fit %s", n, typeName(t))
		}
		return n, nil
	}
	var x any
	switch t {
	case ua.TypeIDBoolean:
		b, err := conv(wapper.TypeBoolean)
		if err != nil {
			return nil, err
		}
		x = b.Bool()
	case ua.TypeIDSByte:
		n, err := integer(math.MinInt8, math.MaxInt8)
		if err != nil {
			return nil, err
		}
		x = int8(n)
	case ua.TypeIDByte:
		n, err := integer(0, math.MaxUint8)
		if err != nil {
			return nil, err
		}
		x = uint8(n)
	case ua.TypeIDInt16:
		n, err := integer(math.MinInt16, math.MaxInt16)
		if err != nil {
			return nil, err
		}
		x = int16(n)
	case ua.TypeIDUint16:
		n, err := integer(0, math.MaxUint16)
		if err != nil {
			return nil, err
		}
		x = uint16(n)
	case ua.TypeIDInt32:
		n, err := integer(math.MinInt32, math.MaxInt32)
		if err != nil {
			return nil, err
		}
		x = int32(n)
	case ua.TypeIDUint32:
		n, err := integer(0, math.MaxUint32)
		if err != nil {
			return nil, err
		}
		x = uint32(n)
	case ua.TypeIDInt64:
		n, err := integer(math.MinInt64, math.MaxInt64)
		if err != nil {
			return nil, err
		}
		x = n
	case ua.TypeIDUint64:
		n, err := integer(0, math.MaxInt64)
		if err != nil {
			return nil, err
		}
		x = uint64(n)
	case ua.TypeIDFloat:
		f, err := conv(wapper.TypeFloat)
		if err != nil {
			return nil, err
		}
		x = f.Float()
	case ua.TypeIDDouble:
		f, err := conv(wapper.TypeDouble)
		if err != nil {
			return nil, err
		}
		x = f.Double()
	case ua.TypeIDString:
		s, err := conv(wapper.TypeString)
		if err != nil {
			return nil, err
		}
		x = s.Str()
	case ua.TypeIDLocalizedText:
		s, err := conv(wapper.TypeString)
		if err != nil {
			return nil, err
		}
		x = ua.NewLocalizedText(s.Str())
	case ua.TypeIDByteString:
		b, err := conv(wapper.TypeBytes)
		if err != nil {
			return nil, err
		}
		x = b.Bytes()
	case ua.TypeIDDateTime:
		s, err := conv(wapper.TypeString)
		if err != nil {
			return nil, err
		}
		tm, err := time.Parse(time.RFC3339Nano, s.Str())
		if err != nil {
			return nil, fmt.Errorf("a DateTime is RFC 3339 text: %v", err)
		}
		x = tm
	default:
		return nil, fmt.Errorf("writing %s values is not supported", typeName(t))
	}
	return ua.NewVariant(x)
}

// writableType tells the built-in type of a node from the value it holds.
func writableType(v *ua.Variant) (ua.TypeID, bool) {
	if v == nil || v.Value() == nil || v.Has(ua.VariantArrayValues) {
		return 0, false
	}
	t := v.Type()
	_, ok := canonical[t]
	return t, ok
}
