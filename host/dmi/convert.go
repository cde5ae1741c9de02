package dmi

import (
	"encoding/base64"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/abi"
)

// DecodeConfigData turns a DMI configData map into the value map a
// KubeEdge YAML configData gives after JSON decoding, so that both paths
// hand plugins the same JSON. Values are google.protobuf wrappers:
//
//   - StringValue and BoolValue: string and bool;
//   - Int32Value, Int64Value, UInt32Value, UInt64Value: integers;
//   - DoubleValue: float64;
//   - FloatValue: edgecore narrows every YAML number to a 32-bit float, so
//     the value is widened to the float64 that prints as float32's
//     shortest form: 0.1 stays 0.1 and 502 stays 502 (integers beyond 2^24
//     lose precision in edgecore already);
//   - Struct, ListValue and Value (not sent by edgecore) as their JSON.
//
// Any other type, and non-finite numbers, are refused; field names the
// configData in errors (such as `spec.protocol.configData`).
func DecodeConfigData(field string, cv *pb.CustomizedValue) (*v1beta1.CustomizedValue, error) {
	if cv == nil {
		return nil, nil
	}
	out := &v1beta1.CustomizedValue{Data: make(map[string]interface{}, len(cv.Data))}
	keys := make([]string, 0, len(cv.Data))
	for k := range cv.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := decodeAny(cv.Data[k])
		if err != nil {
			return nil, fmt.Errorf("%s[%q]: %w", field, k, err)
		}
		out.Data[k] = v
	}
	return out, nil
}

const wrapperTypes = "StringValue, BoolValue, Int32Value, Int64Value, UInt32Value, UInt64Value, FloatValue or DoubleValue"

func decodeAny(a *anypb.Any) (interface{}, error) {
	if a == nil {
		return nil, fmt.Errorf("no value; want a google.protobuf wrapper (%s)", wrapperTypes)
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("unsupported value type %q: %w; want a google.protobuf wrapper (%s)", a.GetTypeUrl(), err, wrapperTypes)
	}
	switch v := m.(type) {
	case *wrapperspb.StringValue:
		return v.Value, nil
	case *wrapperspb.BoolValue:
		return v.Value, nil
	case *wrapperspb.Int32Value:
		return int64(v.Value), nil
	case *wrapperspb.Int64Value:
		return v.Value, nil
	case *wrapperspb.UInt32Value:
		return uint64(v.Value), nil
	case *wrapperspb.UInt64Value:
		return v.Value, nil
	case *wrapperspb.FloatValue:
		f := float64(v.Value)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("FloatValue %v is not a finite number", v.Value)
		}
		return strconv.ParseFloat(strconv.FormatFloat(f, 'g', -1, 32), 64)
	case *wrapperspb.DoubleValue:
		if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) {
			return nil, fmt.Errorf("DoubleValue %v is not a finite number", v.Value)
		}
		return v.Value, nil
	case *structpb.Struct:
		return v.AsMap(), nil
	case *structpb.ListValue:
		return v.AsSlice(), nil
	case *structpb.Value:
		return v.AsInterface(), nil
	default:
		return nil, fmt.Errorf("unsupported value type %q; want a google.protobuf wrapper (%s)", a.GetTypeUrl(), wrapperTypes)
	}
}

// DeviceFromDMI converts a DMI device into KubeEdge's v1beta1 Device, the
// reverse of edgecore's conversion. A device without a namespace is put in
// "default".
func DeviceFromDMI(d *pb.Device) (*v1beta1.Device, error) {
	if d == nil {
		return nil, fmt.Errorf("request has no device")
	}
	if d.Name == "" {
		return nil, fmt.Errorf("device has no name")
	}
	ns := d.Namespace
	if ns == "" {
		ns = "default"
	}
	id := ns + "/" + d.Name
	spec := d.GetSpec()
	if spec == nil {
		return nil, fmt.Errorf("device %s has no spec", id)
	}
	if spec.DeviceModelReference == "" {
		return nil, fmt.Errorf("device %s: spec.deviceModelReference is empty", id)
	}
	if spec.GetProtocol().GetProtocolName() == "" {
		return nil, fmt.Errorf("device %s: spec.protocol.protocolName is empty", id)
	}
	out := &v1beta1.Device{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "Device"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: ns},
		Spec: v1beta1.DeviceSpec{
			DeviceModelRef: &corev1.LocalObjectReference{Name: spec.DeviceModelReference},
			Protocol:       v1beta1.ProtocolConfig{ProtocolName: spec.Protocol.ProtocolName},
		},
	}
	var err error
	if out.Spec.Protocol.ConfigData, err = DecodeConfigData("spec.protocol.configData", spec.Protocol.ConfigData); err != nil {
		return nil, fmt.Errorf("device %s: %w", id, err)
	}
	for i, p := range spec.Properties {
		if p == nil || p.Name == "" {
			return nil, fmt.Errorf("device %s: spec.properties[%d] has no name", id, i)
		}
		dp := v1beta1.DeviceProperty{
			Name:          p.Name,
			ReportCycle:   p.ReportCycle,
			CollectCycle:  p.CollectCycle,
			ReportToCloud: p.ReportToCloud,
		}
		if p.Desired != nil {
			dp.Desired = v1beta1.TwinProperty{Value: p.Desired.Value, Metadata: p.Desired.Metadata}
		}
		if v := p.Visitors; v != nil {
			dp.Visitors.ProtocolName = v.ProtocolName
			field := fmt.Sprintf("spec.properties[%s].visitors.configData", p.Name)
			if dp.Visitors.ConfigData, err = DecodeConfigData(field, v.ConfigData); err != nil {
				return nil, fmt.Errorf("device %s: %w", id, err)
			}
		}
		if dp.PushMethod, err = pushMethodFromDMI(p.PushMethod); err != nil {
			return nil, fmt.Errorf("device %s: spec.properties[%s].pushMethod: %w", id, p.Name, err)
		}
		out.Spec.Properties = append(out.Spec.Properties, dp)
	}
	for _, m := range spec.Methods {
		if m == nil {
			continue
		}
		out.Spec.Methods = append(out.Spec.Methods, v1beta1.DeviceMethod{
			Name: m.Name, Description: m.Description, PropertyNames: m.PropertyNames,
		})
	}
	if st := d.GetStatus(); st != nil && (st.ReportCycle != 0 || st.ReportToCloud) {
		out.Spec.StateReport = &v1beta1.StateReportConfig{ReportCycle: st.ReportCycle, ReportToCloud: st.ReportToCloud}
	}
	return out, nil
}

func pushMethodFromDMI(p *pb.PushMethod) (*v1beta1.PushMethod, error) {
	if p == nil {
		return nil, nil
	}
	out := &v1beta1.PushMethod{}
	if h := p.Http; h != nil {
		out.HTTP = &v1beta1.PushMethodHTTP{HostName: h.Hostname, Port: h.Port, RequestPath: h.Requestpath, Timeout: h.Timeout}
	}
	if m := p.Mqtt; m != nil {
		out.MQTT = &v1beta1.PushMethodMQTT{Address: m.Address, Topic: m.Topic, QoS: m.Qos, Retained: m.Retained}
	}
	if o := p.Otel; o != nil {
		out.OTEL = &v1beta1.PushMethodOTEL{EndpointURL: o.EndpointURL}
	}
	if db := p.DbMethod; db != nil {
		c := &v1beta1.DBMethodConfig{}
		if x := db.Influxdb2; x != nil {
			c.Influxdb2 = &v1beta1.DBMethodInfluxdb2{}
			if cc := x.Influxdb2ClientConfig; cc != nil {
				c.Influxdb2.Influxdb2ClientConfig = &v1beta1.Influxdb2ClientConfig{URL: cc.Url, Org: cc.Org, Bucket: cc.Bucket}
			}
			if dc := x.Influxdb2DataConfig; dc != nil {
				c.Influxdb2.Influxdb2DataConfig = &v1beta1.Influxdb2DataConfig{Measurement: dc.Measurement, Tag: dc.Tag, FieldKey: dc.FieldKey}
			}
		}
		if x := db.Redis; x != nil && x.RedisClientConfig != nil {
			r := x.RedisClientConfig
			c.Redis = &v1beta1.DBMethodRedis{RedisClientConfig: &v1beta1.RedisClientConfig{
				Addr: r.Addr, DB: int(r.Db), Poolsize: int(r.Poolsize), MinIdleConns: int(r.MinIdleConns)}}
		}
		if x := db.Tdengine; x != nil && x.TdEngineClientConfig != nil {
			c.TDEngine = &v1beta1.DBMethodTDEngine{TDEngineClientConfig: &v1beta1.TDEngineClientConfig{
				Addr: x.TdEngineClientConfig.Addr, DBName: x.TdEngineClientConfig.Dbname}}
		}
		if x := db.Mysql; x != nil && x.MysqlClientConfig != nil {
			c.Mysql = &v1beta1.DBMethodMySQL{MySQLClientConfig: &v1beta1.MySQLClientConfig{
				Addr: x.MysqlClientConfig.Addr, Database: x.MysqlClientConfig.Database, UserName: x.MysqlClientConfig.UserName}}
		}
		out.DBMethod = c
	}
	if a := p.AnomalyDetection; a != nil {
		cv, err := DecodeConfigData("anomalyDetection", &pb.CustomizedValue{Data: a.Data})
		if err != nil {
			return nil, err
		}
		out.AnomalyDetection = &v1beta1.AnomalyDetectionConfig{Data: cv.Data}
	}
	return out, nil
}

// ModelFromDMI converts a DMI device model into KubeEdge's v1beta1
// DeviceModel. DMI models carry no protocol: edgecore sends a model to the
// mapper of its protocol and folds its protocolConfigData and visitors
// into each device, so protocol comes from the device that uses the model.
func ModelFromDMI(m *pb.DeviceModel, protocol string) (*v1beta1.DeviceModel, error) {
	if m == nil {
		return nil, fmt.Errorf("request has no model")
	}
	if m.Name == "" {
		return nil, fmt.Errorf("device model has no name")
	}
	ns := m.Namespace
	if ns == "" {
		ns = "default"
	}
	out := &v1beta1.DeviceModel{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "DeviceModel"},
		ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: ns},
		Spec:       v1beta1.DeviceModelSpec{Protocol: protocol},
	}
	for i, p := range m.GetSpec().GetProperties() {
		if p == nil || p.Name == "" {
			return nil, fmt.Errorf("device model %s/%s: spec.properties[%d] has no name", ns, m.Name, i)
		}
		out.Spec.Properties = append(out.Spec.Properties, v1beta1.ModelProperty{
			Name: p.Name, Description: p.Description,
			Type:       v1beta1.PropertyType(strings.ToUpper(p.Type)),
			AccessMode: v1beta1.PropertyAccessMode(p.AccessMode),
			Minimum:    p.Minimum, Maximum: p.Maximum, Unit: p.Unit,
		})
	}
	return out, nil
}

// twinsToDMI converts the manager's twins into DMI twins (see
// twinToDMI).
func twinsToDMI(ts []Twin) []*pb.Twin {
	out := make([]*pb.Twin, 0, len(ts))
	for _, t := range ts {
		out = append(out, twinToDMI(t))
	}
	return out
}

// twinToDMI converts one of the manager's twins into a DMI twin, with the
// metadata mapper-framework sends: the type as edgecore spells it (see
// [abi.Type.TwinType]; edgecore 1.23 does not read it, but a twin created
// over MQTT gets its type from there) and the time in milliseconds since
// the epoch. BYTES and STREAM values become unpadded URL-safe base64,
// the only form of bytes edgecore's twin value check lets through.
func twinToDMI(t Twin) *pb.Twin {
	ty, _ := abi.ParseType(t.Type)
	typ := ty.TwinType()
	return &pb.Twin{
		PropertyName:    t.Property,
		ObservedDesired: &pb.TwinProperty{Value: dmiValue(ty, t.Desired), Metadata: twinMeta(typ, t.DesiredAt)},
		Reported:        &pb.TwinProperty{Value: dmiValue(ty, t.Reported), Metadata: twinMeta(typ, t.ReportedAt)},
	}
}

// dmiValue is a twin text as sent over DMI: BYTES and STREAM re-encoded
// as unpadded URL-safe base64 (a text that is not base64 is left alone),
// anything else as it is.
func dmiValue(ty abi.Type, s string) string {
	if (ty == abi.TypeBytes || ty == abi.TypeStream) && s != "" {
		if v, err := abi.ParseText(ty, s); err == nil {
			return base64.RawURLEncoding.EncodeToString(v.Bytes())
		}
	}
	return s
}

func twinMeta(typ string, at time.Time) map[string]string {
	m := map[string]string{"type": typ}
	if !at.IsZero() {
		m["timestamp"] = strconv.FormatInt(at.UnixMilli(), 10)
	}
	return m
}

// Edgecore's limits on twins (edge/pkg/devicetwin/dtcommon in KubeEdge
// v1.23: ValidateTwinKey and ValidateTwinValue).
const (
	maxTwinName  = 128
	maxTwinValue = 512
	// twinChars are the characters edgecore allows besides ASCII letters
	// and digits.
	twinChars = "-_.,:/@#"
)

// Reasons edgecore would drop a twin, as unreportable gives them (the
// reason label of wapper_dmi_twins_unreportable_total).
const (
	reasonName     = "name"     // the property name fails ValidateTwinKey
	reasonReported = "reported" // the reported value fails ValidateTwinValue
	reasonDesired  = "desired"  // the observed desired value fails ValidateTwinValue
	reasonType     = "type"     // the reported value fails ValidateValue for its type
)

// unreportable tells why edgecore would drop a DMI twin: the reason and
// the rule it breaks, or "" when edgecore takes it. The checks are
// edgecore's: the property name and every non-empty value must be 1 to
// 128 (name) or 512 (value) characters from a-z A-Z 0-9 and twinChars,
// and the reported value must parse as the twin's type (edgecore's
// ValidateValue). The observed desired value is not checked against the
// type: edgecore checks it only against a type the twin got over MQTT.
func unreportable(tw *pb.Twin) (reason, rule string) {
	const chars = "from a-z A-Z 0-9 " + twinChars
	switch {
	case !twinText(tw.PropertyName, maxTwinName):
		return reasonName, "edgecore takes twin names of 1 to 128 characters " + chars
	case tw.Reported.Value != "" && !twinText(tw.Reported.Value, maxTwinValue):
		return reasonReported, "edgecore takes twin values of up to 512 characters " + chars
	case tw.ObservedDesired.Value != "" && !twinText(tw.ObservedDesired.Value, maxTwinValue):
		return reasonDesired, "edgecore takes observed desired values of up to 512 characters " + chars
	}
	switch typ, v := tw.Reported.Metadata["type"], tw.Reported.Value; typ {
	case "int":
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return reasonType, "edgecore takes only a decimal integer as an int twin's value"
		}
	case "float":
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return reasonType, "edgecore takes only a number as a float twin's value"
		}
	case "boolean":
		if v != "true" && v != "false" {
			return reasonType, "edgecore takes only true or false as a boolean twin's value"
		}
	}
	return "", ""
}

// twinText reports whether s passes edgecore's twin name or value check:
// 1 to max characters, each an ASCII letter or digit or in twinChars.
func twinText(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(twinChars, c) >= 0) {
			return false
		}
	}
	return true
}
