package dmi

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/host/devices"
)

// FromManager adapts the host's device manager to [Devices]. The
// protocols of the loaded plugins come from the manager's Protocols method
// when it has one, else from protocols.
func FromManager(m *devices.Manager, protocols func() []string) Devices {
	return &managerDevices{m: m, protocols: protocols}
}

type managerDevices struct {
	m         *devices.Manager
	protocols func() []string
}

func (d *managerDevices) Protocols() []string {
	var ps []string
	if p, ok := any(d.m).(interface{ Protocols() []string }); ok {
		ps = p.Protocols()
	} else if d.protocols != nil {
		ps = d.protocols()
	}
	ps = append([]string(nil), ps...)
	sort.Strings(ps)
	return ps
}

// wrap maps the manager's errors to this package's.
func wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, devices.ErrConflict):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case errors.Is(err, devices.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, devices.ErrInvalid), errors.Is(err, devices.ErrReadOnly):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

func (d *managerDevices) ApplyModel(ctx context.Context, source string, m *v1beta1.DeviceModel) error {
	return wrap(d.m.UpsertModel(ctx, source, m))
}

func (d *managerDevices) RemoveModel(ctx context.Context, source, namespace, name string) error {
	return wrap(d.m.DeleteModel(ctx, source, namespace, name))
}

// ApplyDevice upserts the device and reports one that cannot run with
// ErrRefused (it stays applied, so that a corrected UpdateDevice can fix it).
func (d *managerDevices) ApplyDevice(ctx context.Context, source string, dev *v1beta1.Device) error {
	if err := d.m.UpsertDevice(ctx, source, dev); err != nil {
		return wrap(err)
	}
	st, err := d.m.Device(dev.Namespace, dev.Name)
	if err != nil {
		return wrap(err)
	}
	if st.Phase == devices.PhaseError {
		return fmt.Errorf("%w: %s", ErrRefused, st.Reason)
	}
	return nil
}

func (d *managerDevices) RemoveDevice(ctx context.Context, source, namespace, name string) error {
	return wrap(d.m.DeleteDevice(ctx, source, namespace, name))
}

func (d *managerDevices) Owned(source string) (devices, models []string) {
	return d.m.Owned(source)
}

func (d *managerDevices) Status(namespace, name string) (Status, error) {
	st, err := d.m.Device(namespace, name)
	if err != nil {
		return Status{}, wrap(err)
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
