package dmi

import (
	"context"
	"path"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// server implements DeviceMapperService, the mapper side of DMI.
type server struct {
	pb.UnimplementedDeviceMapperServiceServer
	b *Bridge
}

// observe logs and counts every call; a failed call is logged with its
// message, which is also what edgecore logs.
func (b *Bridge) observe(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	method := path.Base(info.FullMethod)
	st := status.Convert(err)
	b.m.requests.WithLabelValues(method, st.Code().String()).Inc()
	if err != nil {
		b.log.Warn("DMI call failed", "method", method, "code", st.Code(), "err", st.Message())
	} else {
		b.log.Debug("DMI call", "method", method)
	}
	return resp, err
}

func (s *server) RegisterDevice(ctx context.Context, req *pb.RegisterDeviceRequest) (*pb.RegisterDeviceResponse, error) {
	d := req.GetDevice()
	if err := s.b.applyDevice(ctx, d, true); err != nil {
		return nil, err
	}
	return &pb.RegisterDeviceResponse{DeviceName: d.Name, DeviceNamespace: defaultNS(d.Namespace)}, nil
}

func (s *server) UpdateDevice(ctx context.Context, req *pb.UpdateDeviceRequest) (*pb.UpdateDeviceResponse, error) {
	if err := s.b.applyDevice(ctx, req.GetDevice(), true); err != nil {
		return nil, err
	}
	return &pb.UpdateDeviceResponse{}, nil
}

func (s *server) RemoveDevice(ctx context.Context, req *pb.RemoveDeviceRequest) (*pb.RemoveDeviceResponse, error) {
	if req.GetDeviceName() == "" {
		return nil, status.Error(codes.InvalidArgument, "RemoveDevice: deviceName is empty")
	}
	if err := s.b.removeDevice(ctx, req.DeviceNamespace, req.DeviceName); err != nil {
		return nil, err
	}
	return &pb.RemoveDeviceResponse{}, nil
}

func (s *server) CreateDeviceModel(ctx context.Context, req *pb.CreateDeviceModelRequest) (*pb.CreateDeviceModelResponse, error) {
	m := req.GetModel()
	if err := s.b.putModel(ctx, m); err != nil {
		return nil, err
	}
	return &pb.CreateDeviceModelResponse{DeviceModelName: m.Name, DeviceModelNamespace: defaultNS(m.Namespace)}, nil
}

func (s *server) UpdateDeviceModel(ctx context.Context, req *pb.UpdateDeviceModelRequest) (*pb.UpdateDeviceModelResponse, error) {
	if err := s.b.putModel(ctx, req.GetModel()); err != nil {
		return nil, err
	}
	return &pb.UpdateDeviceModelResponse{}, nil
}

func (s *server) RemoveDeviceModel(ctx context.Context, req *pb.RemoveDeviceModelRequest) (*pb.RemoveDeviceModelResponse, error) {
	if req.GetModelName() == "" {
		return nil, status.Error(codes.InvalidArgument, "RemoveDeviceModel: modelName is empty")
	}
	if err := s.b.removeModel(ctx, req.ModelNamespace, req.ModelName); err != nil {
		return nil, err
	}
	return &pb.RemoveDeviceModelResponse{}, nil
}

// GetDevice returns the device as edgecore sent it, with its live twins.
// A device the manager holds from another source is returned with its
// twins only.
func (s *server) GetDevice(ctx context.Context, req *pb.GetDeviceRequest) (*pb.GetDeviceResponse, error) {
	if req.GetDeviceName() == "" {
		return nil, status.Error(codes.InvalidArgument, "GetDevice: deviceName is empty")
	}
	key := id(req.DeviceNamespace, req.DeviceName)
	st, err := s.b.o.Devices.Status(defaultNS(req.DeviceNamespace), req.DeviceName)
	if err != nil {
		return nil, statusError(err, "GetDevice %s", key)
	}
	out := &pb.Device{Name: req.DeviceName, Namespace: defaultNS(req.DeviceNamespace), Status: &pb.DeviceStatus{}}
	s.b.mu.Lock()
	if h := s.b.devices[key]; h != nil {
		out = proto.Clone(h.dev).(*pb.Device)
		if out.Status == nil {
			out.Status = &pb.DeviceStatus{}
		}
	}
	s.b.mu.Unlock()
	out.Status.Twins = twinsToDMI(st.Twins)
	return &pb.GetDeviceResponse{Device: out}, nil
}
