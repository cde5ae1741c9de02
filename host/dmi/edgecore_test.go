package dmi

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// This file is a stand-in edgecore: KubeEdge's generated
// DeviceManagerService server and DeviceMapperService client, with the
// Device and DeviceModel conversions edgecore applies before it calls a
// mapper (edge/pkg/devicetwin/dtcommon: a JSON round trip into the DMI
// messages, and configData values wrapped by Go type, float64 narrowed to
// FloatValue).

// edgecoreAny wraps a configData value as edgecore does.
func edgecoreAny(t testing.TB, v any) *anypb.Any {
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

func edgecoreConfig(t testing.TB, cv *v1beta1.CustomizedValue) *pb.CustomizedValue {
	if cv == nil || cv.Data == nil {
		return nil
	}
	out := &pb.CustomizedValue{Data: map[string]*anypb.Any{}}
	for k, v := range cv.Data {
		out.Data[k] = edgecoreAny(t, v)
	}
	return out
}

// edgecoreDevice converts a Device the way edgecore does before
// RegisterDevice, UpdateDevice and MapperRegister. The device's configData
// must hold JSON-decoded values, as edgecore's do.
func edgecoreDevice(t testing.TB, d *v1beta1.Device) *pb.Device {
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
	out.Spec.Protocol.ConfigData = edgecoreConfig(t, d.Spec.Protocol.ConfigData)
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
		pb2.Visitors.ConfigData = edgecoreConfig(t, p.Visitors.ConfigData)
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

// edgecoreModel converts a DeviceModel the way edgecore does.
func edgecoreModel(t testing.TB, m *v1beta1.DeviceModel) *pb.DeviceModel {
	t.Helper()
	b, _ := json.Marshal(m)
	out := &pb.DeviceModel{}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	out.Name, out.Namespace = m.Name, m.Namespace
	return out
}

// jsonRoundTrip gives a device the value types edgecore holds (it reads
// devices as JSON): every number becomes float64.
func jsonRoundTrip[T any](t testing.TB, v *T) *T {
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

// standIn is the stand-in edgecore's DeviceManagerService.
type standIn struct {
	pb.UnimplementedDeviceManagerServiceServer
	t    *testing.T
	sock string
	srv  *grpc.Server

	mu      sync.Mutex
	regs    []*pb.MapperRegisterRequest
	twins   []*pb.ReportDeviceStatusRequest
	states  []*pb.ReportDeviceStatesRequest
	devices map[string]*pb.Device // returned by MapperRegister with data
	models  map[string]*pb.DeviceModel
	changed chan struct{}
}

func newStandIn(t *testing.T, sock string) *standIn {
	s := &standIn{t: t, sock: sock, devices: map[string]*pb.Device{}, models: map[string]*pb.DeviceModel{}, changed: make(chan struct{}, 1)}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *standIn) start() {
	os.Remove(s.sock)
	lis, err := net.Listen("unix", s.sock)
	if err != nil {
		s.t.Fatal(err)
	}
	s.srv = grpc.NewServer()
	pb.RegisterDeviceManagerServiceServer(s.srv, s)
	go s.srv.Serve(lis)
}

func (s *standIn) stop() {
	if s.srv != nil {
		s.srv.Stop()
		s.srv = nil
	}
}

func (s *standIn) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *standIn) MapperRegister(_ context.Context, in *pb.MapperRegisterRequest) (*pb.MapperRegisterResponse, error) {
	if in.GetMapper().GetProtocol() == "" {
		return nil, fmt.Errorf("fail to register mapper %s because the protocol is nil", in.GetMapper().GetName())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.poke()
	s.regs = append(s.regs, in)
	resp := &pb.MapperRegisterResponse{}
	if in.WithData {
		for _, d := range s.devices {
			if d.Spec.Protocol.ProtocolName != in.Mapper.Protocol {
				continue
			}
			resp.DeviceList = append(resp.DeviceList, d)
			resp.ModelList = append(resp.ModelList, s.models[d.Namespace+"/"+d.Spec.DeviceModelReference])
		}
	}
	return resp, nil
}

func (s *standIn) ReportDeviceStatus(_ context.Context, in *pb.ReportDeviceStatusRequest) (*pb.ReportDeviceStatusResponse, error) {
	if len(in.GetReportedDevice().GetTwins()) == 0 {
		return nil, fmt.Errorf("ReportDeviceStatusRequest does not have twin data")
	}
	s.mu.Lock()
	s.twins = append(s.twins, in)
	s.mu.Unlock()
	s.poke()
	return &pb.ReportDeviceStatusResponse{}, nil
}

func (s *standIn) ReportDeviceStates(_ context.Context, in *pb.ReportDeviceStatesRequest) (*pb.ReportDeviceStatesResponse, error) {
	if in.State == "" || in.DeviceName == "" {
		return nil, fmt.Errorf("ReportDeviceStatesRequest is invalid data")
	}
	s.mu.Lock()
	s.states = append(s.states, in)
	s.mu.Unlock()
	s.poke()
	return &pb.ReportDeviceStatesResponse{}, nil
}

// waitFor polls cond under the stand-in's lock until it holds.
func (s *standIn) waitFor(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			s.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// mapper dials the mapper address of the latest registration, as edgecore
// does.
func (s *standIn) mapper() pb.DeviceMapperServiceClient {
	s.t.Helper()
	s.mu.Lock()
	addr := string(s.regs[len(s.regs)-1].Mapper.Address)
	s.mu.Unlock()
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { conn.Close() })
	return pb.NewDeviceMapperServiceClient(conn)
}

// twinValue returns the reported value of prop in a twin report, or "".
func twinValue(r *pb.ReportDeviceStatusRequest, prop string) (reported, desired string, ok bool) {
	for _, tw := range r.GetReportedDevice().GetTwins() {
		if tw.PropertyName == prop {
			return tw.GetReported().GetValue(), tw.GetObservedDesired().GetValue(), true
		}
	}
	return "", "", false
}
