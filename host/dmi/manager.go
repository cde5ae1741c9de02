package dmi

import (
	"context"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/host/devices"
)

// FromManager adapts the host's device manager to [Devices]; the
// protocols it registers are those of the manager's loaded plugins.
func FromManager(m *devices.Manager) Devices {
	return &managerDevices{m: m}
}

type managerDevices struct {
	m *devices.Manager
}

func (d *managerDevices) Protocols() []string { return d.m.Protocols() }

func (d *managerDevices) ApplyModel(ctx context.Context, source string, m *v1beta1.DeviceModel) error {
	return d.m.UpsertModel(ctx, source, m)
}

func (d *managerDevices) RemoveModel(ctx context.Context, source, namespace, name string) error {
	return d.m.DeleteModel(ctx, source, namespace, name)
}

// ApplyDevices upserts the devices and reports each one that cannot run
// with devices.ErrUnavailable (it stays applied, so that a corrected
// UpdateDevice can fix it).
func (d *managerDevices) ApplyDevices(ctx context.Context, source string, ds []*v1beta1.Device) []error {
	errs := d.m.UpsertDevices(ctx, source, ds)
	for i, dev := range ds {
		if errs[i] != nil {
			continue
		}
		st, err := d.m.Device(dev.Namespace, dev.Name)
		switch {
		case err != nil:
			errs[i] = err
		case st.Phase == devices.PhaseError:
			errs[i] = cannotRun(st.Reason)
		}
	}
	return errs
}

// cannotRun is the error of a device applied and held that cannot run; it
// wraps devices.ErrUnavailable and says "cannot run", as edgecore logs it.
type cannotRun string

func (e cannotRun) Error() string { return "cannot run: " + string(e) }

func (e cannotRun) Unwrap() error { return devices.ErrUnavailable }

func (d *managerDevices) RemoveDevice(ctx context.Context, source, namespace, name string) error {
	return d.m.DeleteDevice(ctx, source, namespace, name)
}

func (d *managerDevices) Owned(source string) (devices, models []string) {
	return d.m.Owned(source)
}

func (d *managerDevices) Status(namespace, name string) (Status, error) {
	st, err := d.m.Device(namespace, name)
	if err != nil {
		return Status{}, err
	}
	out := Status{State: st.State, Twins: make([]Twin, 0, len(st.Twins))}
	for _, t := range st.Twins {
		out.Twins = append(out.Twins, Twin{
			Property: t.Property, Type: t.Type,
			Reported: t.Reported, ReportedAt: t.ReportedTime,
			Desired: t.Desired, DesiredAt: t.DesiredTime,
		})
	}
	return out, nil
}
