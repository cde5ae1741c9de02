// Package dmitest is a stand-in KubeEdge edgecore for tests: KubeEdge's
// generated DeviceManagerService server and DeviceMapperService client on
// unix sockets, the Device and DeviceModel conversions edgecore applies
// before it calls a mapper (edge/pkg/devicetwin/dtcommon: a JSON round trip
// into the DMI messages, configData values wrapped by their Go type, float64
// narrowed to FloatValue), and the checks edgecore applies to every
// reported twin before it keeps it (see [Edgecore.ReportDeviceStatus]).
package dmitest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ConfigValue wraps a configData value as edgecore does.
func ConfigValue(t testing.TB, v any) *anypb.Any {
	t.Helper()
	var a *anypb.Any
	var err error
	switch x := v.(type) {
	case string:
		a, err = anypb.New(wrapperspb.String(x))
	case int:
		a, err = anypb.New(wrapperspb.Int32(int32(x)))
	case int32:
		a, err = anypb.New(wrapperspb.Int32(x))
	case int64:
		a, err = anypb.New(wrapperspb.Int64(x))
	case float64:
		a, err = anypb.New(wrapperspb.Float(float32(x)))
	case float32:
		a, err = anypb.New(wrapperspb.Float(x))
	case bool:
		a, err = anypb.New(wrapperspb.Bool(x))
	default:
		t.Fatalf("edgecore cannot convert %T to any", v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func config(t testing.TB, cv *v1beta1.CustomizedValue) *pb.CustomizedValue {
	if cv == nil || cv.Data == nil {
		return nil
	}
	out := &pb.CustomizedValue{Data: map[string]*anypb.Any{}}
	for k, v := range cv.Data {
		out.Data[k] = ConfigValue(t, v)
	}
	return out
}

// Device converts a Device the way edgecore does before
// RegisterDevice, UpdateDevice and MapperRegister. The device's configData
// must hold JSON-decoded values, as edgecore's do.
func Device(t testing.TB, d *v1beta1.Device) *pb.Device {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	out := &pb.Device{}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	if out.Spec == nil {
		out.Spec = &pb.DeviceSpec{}
	}
	if out.Spec.Protocol == nil {
		out.Spec.Protocol = &pb.ProtocolConfig{}
	}
	out.Spec.Protocol.ConfigData = config(t, d.Spec.Protocol.ConfigData)
	out.Spec.Properties = nil
	for _, p := range d.Spec.Properties {
		pb2 := &pb.DeviceProperty{}
		pj, _ := json.Marshal(p)
		if err := json.Unmarshal(pj, pb2); err != nil {
			t.Fatal(err)
		}
		if pb2.Visitors == nil {
			pb2.Visitors = &pb.VisitorConfig{}
		}
		pb2.Visitors.ConfigData = config(t, p.Visitors.ConfigData)
		out.Spec.Properties = append(out.Spec.Properties, pb2)
	}
	out.Name, out.Namespace = d.Name, d.Namespace
	if d.Spec.DeviceModelRef != nil {
		out.Spec.DeviceModelReference = d.Spec.DeviceModelRef.Name
	}
	if sr := d.Spec.StateReport; sr != nil {
		out.Status = &pb.DeviceStatus{ReportCycle: sr.ReportCycle, ReportToCloud: sr.ReportToCloud}
	}
	return out
}

// Model converts a DeviceModel the way edgecore does.
func Model(t testing.TB, m *v1beta1.DeviceModel) *pb.DeviceModel {
	t.Helper()
	b, _ := json.Marshal(m)
	out := &pb.DeviceModel{}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	out.Name, out.Namespace = m.Name, m.Namespace
	return out
}

// JSONRoundTrip gives a device the value types edgecore holds (it reads
// devices as JSON): every number becomes float64.
func JSONRoundTrip[T any](t testing.TB, v *T) *T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Edgecore is a stand-in edgecore: it serves DeviceManagerService on a
// unix socket, records what mappers register and report, and calls the
// registered mapper's DeviceMapperService like edgecore does. Its exported
// fields may be read inside [Edgecore.WaitFor] and [Edgecore.With].
type Edgecore struct {
	pb.UnimplementedDeviceManagerServiceServer
	t    testing.TB
	sock string
	srv  *grpc.Server
	conn *grpc.ClientConn

	mu            sync.Mutex // guards the fields below
	Registrations []*pb.MapperRegisterRequest
	Twins         []*pb.ReportDeviceStatusRequest
	States        []*pb.ReportDeviceStatesRequest
	// Refused counts the calls refused by the limiter.
	Refused int
	// RefusedTwins are the reported twins edgecore would have dropped
	// (see ReportDeviceStatus). Unless the test calls ExpectRefusedTwins,
	// any of them fails the test when it ends.
	RefusedTwins  []RefusedTwin
	expectRefused bool
	twins         map[string]*twin      // edgecore's twin store, by namespace/name/property
	devices       map[string]*pb.Device // returned by MapperRegister with data
	models        map[string]*pb.DeviceModel
	limiter       *rate.Limiter
	changed       chan struct{}
	gate          chan struct{} // with HoldRegistrations: MapperRegister waits for it to close
	gated         atomic.Int32  // MapperRegister calls waiting at the gate
}

// HoldRegistrations makes MapperRegister calls wait, before they answer
// from what the stand-in holds, until release is called; Gated counts the
// calls waiting.
func (e *Edgecore) HoldRegistrations() (release func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	gate := make(chan struct{})
	e.gate = gate
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Lock()
			e.gate = nil
			e.mu.Unlock()
			close(gate)
		})
	}
}

// Gated is the number of MapperRegister calls waiting at the gate of
// HoldRegistrations (it takes no lock: WaitFor's cond may call it).
func (e *Edgecore) Gated() int { return int(e.gated.Load()) }

// SetLimiter makes the stand-in refuse calls beyond l, with edgecore's
// messages, as edgecore's DMI server does with rate.Every(time.Second)
// and a burst of 100 shared by every call. nil removes the limit.
func (e *Edgecore) SetLimiter(l *rate.Limiter) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.limiter = l
}

// allow applies the limiter; call with mu held.
func (e *Edgecore) allow() bool {
	if e.limiter == nil || e.limiter.Allow() {
		return true
	}
	e.Refused++
	return false
}

// Start serves a stand-in edgecore on sock until the test ends.
func Start(t testing.TB, sock string) *Edgecore {
	e := &Edgecore{t: t, sock: sock, devices: map[string]*pb.Device{}, models: map[string]*pb.DeviceModel{},
		twins: map[string]*twin{}, changed: make(chan struct{}, 1)}
	e.Restart()
	t.Cleanup(func() {
		e.Stop()
		if e.conn != nil {
			e.conn.Close()
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if !e.expectRefused {
			for _, r := range e.RefusedTwins {
				t.Errorf("edgecore would drop twin %s of device %s/%s: %s", r.Property, r.Namespace, r.Name, r.Reason)
			}
		}
	})
	return e
}

// ExpectRefusedTwins lets the test end with refused twins in
// RefusedTwins, for tests that check them.
func (e *Edgecore) ExpectRefusedTwins() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expectRefused = true
}

// Restart serves again after Stop, on the same socket, keeping what it
// holds (as edgecore keeps its devices in its database).
func (e *Edgecore) Restart() {
	os.Remove(e.sock)
	lis, err := net.Listen("unix", e.sock)
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = grpc.NewServer()
	pb.RegisterDeviceManagerServiceServer(e.srv, e)
	go e.srv.Serve(lis)
}

// Stop stops serving, as when edgecore exits.
func (e *Edgecore) Stop() {
	if e.srv != nil {
		e.srv.Stop()
		e.srv = nil
	}
}

func (e *Edgecore) poke() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

// MapperRegister records the registration and, with data, returns the
// devices of the protocol and their models, like edgecore.
func (e *Edgecore) MapperRegister(_ context.Context, in *pb.MapperRegisterRequest) (*pb.MapperRegisterResponse, error) {
	if in.GetMapper().GetProtocol() == "" {
		return nil, fmt.Errorf("fail to register mapper %s because the protocol is nil", in.GetMapper().GetName())
	}
	e.mu.Lock()
	if gate := e.gate; gate != nil {
		e.gated.Add(1)
		e.mu.Unlock()
		e.poke()
		<-gate
		e.mu.Lock()
		e.gated.Add(-1)
	}
	defer e.mu.Unlock()
	defer e.poke()
	if !e.allow() {
		return nil, fmt.Errorf("fail to register mapper because of too many request: %s", in.Mapper.Name)
	}
	e.Registrations = append(e.Registrations, in)
	resp := &pb.MapperRegisterResponse{}
	if in.WithData {
		for _, d := range e.devices {
			if d.Spec.Protocol.ProtocolName != in.Mapper.Protocol {
				continue
			}
			resp.DeviceList = append(resp.DeviceList, d)
			resp.ModelList = append(resp.ModelList, e.models[d.Namespace+"/"+d.Spec.DeviceModelReference])
		}
	}
	return resp, nil
}

// ReportDeviceStatus records a twin report; like edgecore it refuses one
// without twins. Like edgecore, it then takes each twin on its own (as a
// twin update message holding the reported value as actual and the
// observed desired value as expected, with no metadata: edgecore drops
// the twin's metadata here) and keeps it only if it passes edgecore's
// checks (edge/pkg/devicetwin: dttype.UnmarshalDeviceTwinUpdate and
// dtmanager's dealTwinAdd and dealTwinCompare):
//
//   - the property name passes [ValidateTwinKey];
//   - non-empty expected and actual values pass [ValidateTwinValue];
//   - a twin edgecore does not have yet is added with type "string"
//     (edgecore's default when the update carries no metadata), which
//     accepts any value;
//   - for a twin it has (see [Edgecore.AddTwin]), the expected value
//     passes [ValidateValue] against the twin's type once the twin has an
//     expected value, and the actual value always does.
//
// A twin that fails is recorded in RefusedTwins; edgecore answers the
// call with success either way, as it checks twins after answering.
func (e *Edgecore) ReportDeviceStatus(_ context.Context, in *pb.ReportDeviceStatusRequest) (*pb.ReportDeviceStatusResponse, error) {
	if len(in.GetReportedDevice().GetTwins()) == 0 {
		return nil, fmt.Errorf("ReportDeviceStatusRequest does not have twin data")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.allow() {
		return nil, fmt.Errorf("fail to report device status because of too many request: %s", in.DeviceName)
	}
	e.Twins = append(e.Twins, in)
	for _, tw := range in.ReportedDevice.Twins {
		if err := e.applyTwin(in.DeviceNamespace, in.DeviceName, tw); err != nil {
			e.RefusedTwins = append(e.RefusedTwins, RefusedTwin{Namespace: in.DeviceNamespace, Name: in.DeviceName,
				Property: tw.GetPropertyName(), Reported: tw.GetReported().GetValue(), Desired: tw.GetObservedDesired().GetValue(), Reason: err.Error()})
		}
	}
	e.poke()
	return &pb.ReportDeviceStatusResponse{}, nil
}

// RefusedTwin is a reported twin edgecore would have dropped.
type RefusedTwin struct {
	Namespace, Name, Property string
	// Reported and Desired are the twin's reported and observed desired
	// values.
	Reported, Desired string
	// Reason is edgecore's error.
	Reason string
}

// twin is what edgecore keeps of a twin that matters to its checks.
type twin struct {
	typ         string // the attr_type
	hasExpected bool
}

func twinKey(namespace, name, property string) string {
	if namespace == "" {
		namespace = "default"
	}
	return namespace + "/" + name + "/" + property
}

// applyTwin applies edgecore's checks to one reported twin and, when it
// passes, keeps it as edgecore would. Call with mu.
func (e *Edgecore) applyTwin(namespace, name string, tw *pb.Twin) error {
	if tw.GetReported() == nil || tw.GetObservedDesired() == nil {
		// CreateMessageTwinUpdate takes &twin.ObservedDesired.Value and
		// &twin.Reported.Value.
		return fmt.Errorf("twin without reported or observedDesired: edgecore dereferences a nil pointer")
	}
	if !ValidateTwinKey(tw.PropertyName) {
		return fmt.Errorf("the key of twin is invalid")
	}
	expected, actual := tw.ObservedDesired.Value, tw.Reported.Value
	if expected != "" && !ValidateTwinValue(expected) || actual != "" && !ValidateTwinValue(actual) {
		return fmt.Errorf("the value of twin is invalid")
	}
	key := twinKey(namespace, name, tw.PropertyName)
	t := e.twins[key]
	if t == nil {
		e.twins[key] = &twin{typ: "string", hasExpected: true}
		return nil
	}
	if t.hasExpected {
		if err := ValidateValue(t.typ, expected); err != nil {
			return fmt.Errorf("expected value %q of a %q twin: %v", expected, t.typ, err)
		}
	}
	t.hasExpected = true
	if err := ValidateValue(t.typ, actual); err != nil {
		return fmt.Errorf("actual value %q of a %q twin: %v", actual, t.typ, err)
	}
	return nil
}

// AddTwin adds a twin to the stand-in's twin store as an MQTT twin update
// carrying only an actual value and metadata.type typ does in edgecore
// (wapper-host's MQTT bridge sends such updates when its broker is
// edgecore's): later reports of the twin are checked against typ. It
// returns edgecore's error when edgecore would refuse the update.
func (e *Edgecore) AddTwin(namespace, name, property, typ, actual string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !ValidateTwinKey(property) {
		return fmt.Errorf("the key of twin is invalid")
	}
	if actual != "" && !ValidateTwinValue(actual) {
		return fmt.Errorf("the value of twin is invalid")
	}
	key := twinKey(namespace, name, property)
	if t := e.twins[key]; t != nil {
		return ValidateValue(t.typ, actual)
	}
	if err := ValidateValue(typ, actual); err != nil {
		return err
	}
	e.twins[key] = &twin{typ: typ}
	return nil
}

// TwinType returns the type edgecore holds for a twin, and whether it
// holds the twin.
func (e *Edgecore) TwinType(namespace, name, property string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.twins[twinKey(namespace, name, property)]
	if t == nil {
		return "", false
	}
	return t.typ, true
}

// Edgecore's twin checks (edge/pkg/devicetwin/dtcommon in KubeEdge
// v1.23), copied.
var (
	twinKeyRE   = regexp.MustCompile(`^[a-zA-Z0-9-_.,:/@#]{1,128}$`)
	twinValueRE = regexp.MustCompile(`^[a-zA-Z0-9-_.,:/@#]{1,512}$`)
)

// ValidateTwinKey is edgecore's check of a twin name.
func ValidateTwinKey(key string) bool { return twinKeyRE.MatchString(key) }

// ValidateTwinValue is edgecore's check of a non-empty twin value.
func ValidateTwinValue(value string) bool { return twinValueRE.MatchString(value) }

// ValidateValue is edgecore's check of a twin value against the twin's
// type: "" and "string" take anything, "int" and "integer" a decimal
// int64, "float" what strconv.ParseFloat takes, "boolean" only "true" or
// "false"; any other type (such as "double" or "INT") is refused.
func ValidateValue(valueType, value string) error {
	switch valueType {
	case "", "string", "deleted":
		return nil
	case "int", "integer":
		if _, err := strconv.ParseInt(value, 10, 64); err != nil {
			return fmt.Errorf("the value is not int or integer")
		}
		return nil
	case "float":
		if _, err := strconv.ParseFloat(value, 64); err != nil {
			return fmt.Errorf("the value is not float")
		}
		return nil
	case "boolean":
		if strings.Compare(value, "true") != 0 && strings.Compare(value, "false") != 0 {
			return fmt.Errorf("the bool value must be true or false")
		}
		return nil
	}
	return fmt.Errorf("the value type is not allowed")
}

// ReportDeviceStates records a state report.
func (e *Edgecore) ReportDeviceStates(_ context.Context, in *pb.ReportDeviceStatesRequest) (*pb.ReportDeviceStatesResponse, error) {
	if in.State == "" || in.DeviceName == "" {
		return nil, fmt.Errorf("ReportDeviceStatesRequest is invalid data")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.allow() {
		return nil, fmt.Errorf("fail to report device states because of too many request: %s", in.DeviceName)
	}
	e.States = append(e.States, in)
	e.poke()
	return &pb.ReportDeviceStatesResponse{}, nil
}

// With runs fn with the recorded calls locked.
func (e *Edgecore) With(fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn()
}

// WaitFor waits (at most a minute) until cond, run with the recorded calls
// locked, holds.
func (e *Edgecore) WaitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.After(time.Minute)
	for {
		e.mu.Lock()
		ok := cond()
		e.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-e.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			e.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Mapper returns a DeviceMapperService client for the address of the
// latest registration, dialled as edgecore does.
func (e *Edgecore) Mapper() pb.DeviceMapperServiceClient {
	e.t.Helper()
	e.mu.Lock()
	addr := string(e.Registrations[len(e.Registrations)-1].Mapper.Address)
	e.mu.Unlock()
	if e.conn != nil {
		e.conn.Close()
	}
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.conn = conn
	return pb.NewDeviceMapperServiceClient(conn)
}

// Hold records a device and its model as edgecore's own, returned by
// MapperRegister with data; a nil device forgets namespace/name.
func (e *Edgecore) Hold(namespace, name string, d *pb.Device, m *pb.DeviceModel) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d == nil {
		delete(e.devices, namespace+"/"+name)
		return
	}
	e.devices[namespace+"/"+name] = d
	if m != nil {
		e.models[m.Namespace+"/"+m.Name] = m
	}
}

// LastTwin returns the last twin report of a device, or nil. Call it
// inside With or WaitFor.
func (e *Edgecore) LastTwin(name string) *pb.ReportDeviceStatusRequest {
	for i := len(e.Twins) - 1; i >= 0; i-- {
		if e.Twins[i].DeviceName == name {
			return e.Twins[i]
		}
	}
	return nil
}

// CountTwins counts the twin reports of a device from index from on. Call
// it inside With or WaitFor.
func (e *Edgecore) CountTwins(name string, from int) int {
	n := 0
	for _, r := range e.Twins[from:] {
		if r.DeviceName == name {
			n++
		}
	}
	return n
}

// TwinValue returns the reported and desired values of prop in a twin
// report.
func TwinValue(r *pb.ReportDeviceStatusRequest, prop string) (reported, desired string, ok bool) {
	for _, tw := range r.GetReportedDevice().GetTwins() {
		if tw.PropertyName == prop {
			return tw.GetReported().GetValue(), tw.GetObservedDesired().GetValue(), true
		}
	}
	return "", "", false
}

// Counts returns how many registrations, twin reports and state reports
// were recorded.
func (e *Edgecore) Counts() (registrations, twins, states int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.Registrations), len(e.Twins), len(e.States)
}
