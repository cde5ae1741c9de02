package dmi

import (
	"context"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
)

// Source is the source name under which the bridge applies devices and
// models to the manager. The manager refuses a name that another source
// (such as the manifests folder) already holds.
const Source = "dmi"

// Devices is the part of the host's device manager the bridge uses. Its
// errors wrap the sentinels of package wapper.dev/wapper/host/devices, so
// that the bridge answers with the right gRPC code: devices.ErrNotFound,
// devices.ErrConflict, devices.ErrInvalid and devices.ErrReadOnly, and
// devices.ErrUnavailable for a device applied and held that cannot run
// (an invalid desired value, its plugin refused it or failed to load). The
// bridge keeps such a device like a running one, so that RemoveDevice
// removes it and UpdateDevice can correct it.
type Devices interface {
	// Protocols lists the protocols that loaded plugins provide.
	Protocols() []string
	// ApplyModel creates or replaces a DeviceModel owned by source.
	ApplyModel(ctx context.Context, source string, m *v1beta1.DeviceModel) error
	// RemoveModel removes a DeviceModel owned by source; removing one that
	// source does not have is not an error.
	RemoveModel(ctx context.Context, source, namespace, name string) error
	// ApplyDevices creates or replaces Devices owned by source, together
	// (thousands come in one MapperRegister answer), and returns the
	// error of each: errs[i] is that of ds[i]. A changed desired value in
	// spec.properties is written to the device (one on a ReadOnly
	// property is ignored). A device applied but unable to run is
	// reported with an error wrapping devices.ErrUnavailable.
	ApplyDevices(ctx context.Context, source string, ds []*v1beta1.Device) (errs []error)
	// RemoveDevice removes a Device owned by source; removing one that
	// source does not have is not an error.
	RemoveDevice(ctx context.Context, source, namespace, name string) error
	// Owned lists the keys (namespace/name) of the Devices and
	// DeviceModels source has applied.
	Owned(source string) (devices, models []string)
	// Status returns a device's live state and twins.
	Status(namespace, name string) (Status, error)
}

// Status is a device's state and twins as the manager holds them.
type Status struct {
	// State is KubeEdge's spelling: ok, online, offline, unhealthy, unknown.
	State string
	// Twins has one entry per property, in the device's order.
	Twins []Twin
}

// Twin is one property's desired and reported value.
type Twin struct {
	// Property is the property name.
	Property string
	// Type is the model's property type (INT, FLOAT, ...).
	Type string
	// Reported is the last value read, as KubeEdge twin text; ReportedAt
	// is zero until the first read.
	Reported   string
	ReportedAt time.Time
	// Desired is the desired value, empty if none.
	Desired   string
	DesiredAt time.Time
}
