package dmi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/store"
)

// Buckets for what edgecore sent, so that reports resume after a host
// restart even before edgecore answers again.
var (
	// topBucket is host/dmi's top-level bucket in the state database; the
	// others are inside it.
	topBucket     = []byte(store.TopDMI)
	devicesBucket = []byte("devices")
	modelsBucket  = []byte("models")
)

// bucket returns the bucket name inside topBucket, creating both if need be.
func bucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	top, err := tx.CreateBucketIfNotExists(topBucket)
	if err != nil {
		return nil, err
	}
	return top.CreateBucketIfNotExists(name)
}

func id(namespace, name string) string { return defaultNS(namespace) + "/" + name }

func defaultNS(namespace string) string {
	if namespace == "" {
		return "default"
	}
	return namespace
}

// statusError maps a manager error to a gRPC status.
func statusError(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...) + ": " + err.Error()
	switch {
	case errors.Is(err, devices.ErrNotFound):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, devices.ErrConflict):
		return status.Error(codes.AlreadyExists, msg)
	case errors.Is(err, devices.ErrInvalid), errors.Is(err, devices.ErrReadOnly), errors.Is(err, devices.ErrUnavailable):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.Canceled, msg)
	}
	return status.Error(codes.Internal, msg)
}

// restore loads what edgecore sent before a restart and applies it again.
func (b *Bridge) restore(ctx context.Context) error {
	var devs []*pb.Device
	err := b.o.DB.Update(func(tx *bolt.Tx) error {
		mb, err := bucket(tx, modelsBucket)
		if err != nil {
			return err
		}
		db, err := bucket(tx, devicesBucket)
		if err != nil {
			return err
		}
		if err := mb.ForEach(func(k, v []byte) error {
			m := &pb.DeviceModel{}
			if err := proto.Unmarshal(v, m); err != nil {
				return fmt.Errorf("model %s: %w", k, err)
			}
			b.models[string(k)] = m
			return nil
		}); err != nil {
			return err
		}
		return db.ForEach(func(k, v []byte) error {
			d := &pb.Device{}
			if err := proto.Unmarshal(v, d); err != nil {
				return fmt.Errorf("device %s: %w", k, err)
			}
			devs = append(devs, d)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load DMI devices and models from the state database: %w", err)
	}
	b.forgetStale(ctx, devs)
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	held := b.admitAll(ctx, devs, func(d *pb.Device, held bool, err error) {
		b.log.Warn("restore DMI device", "device", id(d.Namespace, d.Name), "err", status.Convert(err).Message())
		if !held {
			// Its plugin may not be loaded yet: keep reporting it, so
			// that it reports (into the outbox if edgecore is down)
			// once the manager runs it.
			b.startReports(id(d.Namespace, d.Name), d, d.GetSpec().GetProtocol().GetProtocolName())
		}
	})
	if err := b.saveDevices(held); err != nil {
		b.log.Error("save the restored DMI devices", "err", err)
	}
	return nil
}

// admitted is a device from edgecore that the manager holds, running or
// not, to be saved and reported.
type admitted struct {
	key      string
	dev      *pb.Device
	protocol string
}

// admitAll applies devices from edgecore to the manager and starts
// reporting those it holds, running or not; it calls refused for each one
// it refused or cannot run (held tells which). It returns the devices
// held, for the caller to save in one transaction. Call with applyMu.
func (b *Bridge) admitAll(ctx context.Context, devs []*pb.Device, refused func(d *pb.Device, held bool, err error)) []admitted {
	var ok []admitted
	var objs []*v1beta1.Device
	var from []*pb.Device
	for _, d := range devs {
		a, obj, err := b.check(ctx, d, false)
		if err != nil {
			refused(d, false, err)
			continue
		}
		ok, objs, from = append(ok, a), append(objs, obj), append(from, d)
	}
	errs := b.o.Devices.ApplyDevices(ctx, Source, objs)
	var out []admitted
	for i, a := range ok {
		a, err := holding(a, errs[i])
		if a.dev != nil {
			out = append(out, a)
			b.startReports(a.key, a.dev, a.protocol)
		}
		if err != nil {
			refused(from[i], a.dev != nil, err)
		}
	}
	return out
}

// saveDevices saves devices received from edgecore in one transaction.
func (b *Bridge) saveDevices(devs []admitted) error {
	if len(devs) == 0 {
		return nil
	}
	return b.o.DB.Update(func(tx *bolt.Tx) error {
		bk, err := bucket(tx, devicesBucket)
		if err != nil {
			return err
		}
		for _, a := range devs {
			v, err := proto.Marshal(a.dev)
			if err != nil {
				return fmt.Errorf("device %s: %w", a.key, err)
			}
			if err := bk.Put([]byte(a.key), v); err != nil {
				return fmt.Errorf("device %s: %w", a.key, err)
			}
		}
		return nil
	})
}

// forgetStale removes from the manager the devices and models it holds
// for DMI that the bridge did not save: left by a crash between the two
// saves, or by an older version that did not record refused devices.
// Edgecore sends again whatever it still has at the next MapperRegister.
func (b *Bridge) forgetStale(ctx context.Context, saved []*pb.Device) {
	keep := map[string]bool{}
	for _, d := range saved {
		keep["device "+id(d.Namespace, d.Name)] = true
		keep["model "+id(d.Namespace, d.GetSpec().GetDeviceModelReference())] = true
	}
	for k := range b.models {
		keep["model "+k] = true
	}
	devs, models := b.o.Devices.Owned(Source)
	for _, k := range devs {
		if keep["device "+k] {
			continue
		}
		ns, name, _ := strings.Cut(k, "/")
		if err := b.o.Devices.RemoveDevice(ctx, Source, ns, name); err != nil {
			b.log.Warn("remove a stale DMI device", "device", k, "err", err)
			continue
		}
		b.log.Info("removed a DMI device the bridge had not recorded; edgecore sends it again if it still has it", "device", k)
	}
	for _, k := range models {
		if keep["model "+k] {
			continue
		}
		ns, name, _ := strings.Cut(k, "/")
		if err := b.o.Devices.RemoveModel(ctx, Source, ns, name); err != nil {
			b.log.Warn("remove a stale DMI device model", "model", k, "err", err)
		}
	}
}

func (b *Bridge) save(name []byte, key string, m proto.Message) error {
	return b.o.DB.Update(func(tx *bolt.Tx) error {
		bk, err := bucket(tx, name)
		if err != nil {
			return err
		}
		if m == nil {
			return bk.Delete([]byte(key))
		}
		v, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		return bk.Put([]byte(key), v)
	})
}

func (b *Bridge) hasProtocol(p string) ([]string, bool) {
	ps := b.o.Devices.Protocols()
	return ps, slices.Contains(ps, p)
}

func (b *Bridge) model(key string) *pb.DeviceModel {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.models[key]
}

// applyDevice registers or updates a device received from edgecore. With
// wait, a missing model is waited for up to ModelWait.
func (b *Bridge) applyDevice(ctx context.Context, d *pb.Device, wait bool) error {
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	a, obj, err := b.check(ctx, d, wait)
	if err != nil {
		return err
	}
	a, err = holding(a, b.o.Devices.ApplyDevices(ctx, Source, []*v1beta1.Device{obj})[0])
	if a.dev == nil {
		return err
	}
	// A device that cannot run is held by the manager all the same (as
	// edgecore keeps it in its cache), so it is recorded like a running
	// one: RemoveDevice removes it, a restart restores it, and
	// UpdateDevice can correct it.
	if serr := b.saveDevices([]admitted{a}); serr != nil {
		return status.Errorf(codes.Internal, "device %s: save to the state database: %v", a.key, serr)
	}
	b.startReports(a.key, a.dev, a.protocol)
	return err
}

// check checks a device received from edgecore and applies its model to
// the manager; it returns the device as the manager takes it, for
// Devices.ApplyDevices, and what the bridge records of it. With wait, a
// missing model is waited for up to ModelWait. Call with applyMu: it is
// released while waiting.
func (b *Bridge) check(ctx context.Context, d *pb.Device, wait bool) (admitted, *v1beta1.Device, error) {
	dev, err := DeviceFromDMI(d)
	if err != nil {
		return admitted{}, nil, status.Error(codes.InvalidArgument, err.Error())
	}
	key := id(dev.Namespace, dev.Name)
	protocol := dev.Spec.Protocol.ProtocolName
	d = proto.Clone(d).(*pb.Device)
	d.Namespace = dev.Namespace
	if ps, ok := b.hasProtocol(protocol); !ok {
		return admitted{}, nil, status.Errorf(codes.FailedPrecondition,
			"device %s: unknown protocol %q: no loaded plugin provides it (loaded: %v); apply a MapperPlugin that lists %q in spec.protocols",
			key, protocol, ps, protocol)
	}
	mkey := id(dev.Namespace, dev.Spec.DeviceModelRef.Name)
	pm := b.model(mkey)
	if pm == nil && wait {
		// CreateDeviceModel takes applyMu too: let it in.
		b.applyMu.Unlock()
		pm, err = b.waitModel(ctx, mkey)
		b.applyMu.Lock()
		if err != nil {
			return admitted{}, nil, err
		}
	}
	if pm == nil {
		return admitted{}, nil, status.Errorf(codes.FailedPrecondition,
			"device %s: device model %s not found: edgecore must send CreateDeviceModel first; check that the DeviceModel exists in namespace %s",
			key, mkey, dev.Namespace)
	}
	model, err := ModelFromDMI(pm, protocol)
	if err != nil {
		return admitted{}, nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := b.checkModelProperties(key, dev.Spec.Properties, pm); err != nil {
		return admitted{}, nil, err
	}
	// Edgecore sends every device again on each registration; the
	// manager notices what it already has, at little cost.
	if err := b.o.Devices.ApplyModel(ctx, Source, model); err != nil {
		return admitted{}, nil, statusError(err, "device %s: apply device model %s", key, mkey)
	}
	return admitted{key: key, dev: d, protocol: protocol}, dev, nil
}

// holding is what a checked device a becomes once the manager applied it
// with error err: held (a.dev set) unless refused, with an error when it
// cannot run. The caller saves and reports a held device.
func holding(a admitted, err error) (admitted, error) {
	switch {
	case err == nil:
		return a, nil
	case errors.Is(err, devices.ErrUnavailable):
		return a, statusError(err, "device %s", a.key)
	default:
		return admitted{}, statusError(err, "device %s", a.key)
	}
}

// waitModel waits up to ModelWait for a model edgecore has not sent yet.
func (b *Bridge) waitModel(ctx context.Context, key string) (*pb.DeviceModel, error) {
	deadline := time.Now().Add(b.o.ModelWait)
	pm := b.model(key)
	for pm == nil && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(50 * time.Millisecond):
		}
		pm = b.model(key)
	}
	return pm, nil
}

// checkModelProperties refuses device properties the model lacks.
func (b *Bridge) checkModelProperties(key string, props []v1beta1.DeviceProperty, m *pb.DeviceModel) error {
	have := map[string]bool{}
	for _, p := range m.GetSpec().GetProperties() {
		have[p.GetName()] = true
	}
	for _, p := range props {
		if !have[p.Name] {
			return status.Errorf(codes.InvalidArgument, "device %s: property %q is not in device model %s/%s (model has %v)",
				key, p.Name, m.Namespace, m.Name, sortedKeys(have))
		}
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// removeDevice removes a device received from edgecore. Removing one the
// bridge does not hold succeeds: edgecore keeps a device in its cache, and
// lists it at every MapperRegister, until its mapper accepts the removal.
func (b *Bridge) removeDevice(ctx context.Context, namespace, name string) error {
	key := id(namespace, name)
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	b.mu.Lock()
	h := b.devices[key]
	b.mu.Unlock()
	model := ""
	if h == nil {
		b.log.Debug("remove of a device this mapper does not hold; nothing to do", "device", key)
	} else {
		model = id(h.dev.Namespace, h.dev.GetSpec().GetDeviceModelReference())
		b.stopReports(key, true)
	}
	// The manager is asked in any case: removing what it lacks is no
	// error, and it may hold a device the bridge lost track of.
	if err := b.o.Devices.RemoveDevice(ctx, Source, defaultNS(namespace), name); err != nil && !errors.Is(err, devices.ErrNotFound) {
		return statusError(err, "remove device %s", key)
	}
	if err := b.save(devicesBucket, key, nil); err != nil {
		return status.Errorf(codes.Internal, "device %s: remove from the state database: %v", key, err)
	}
	if model != "" {
		b.releaseModel(ctx, model)
	}
	return nil
}

// releaseModel removes from the manager a model that edgecore removed
// while devices used it, once none does. Call with applyMu.
func (b *Bridge) releaseModel(ctx context.Context, key string) {
	b.mu.Lock()
	_, used := b.models[key]
	for _, h := range b.devices {
		used = used || id(h.dev.Namespace, h.dev.GetSpec().GetDeviceModelReference()) == key
	}
	b.mu.Unlock()
	if used {
		return
	}
	ns, name, _ := strings.Cut(key, "/")
	if err := b.o.Devices.RemoveModel(ctx, Source, ns, name); err != nil && !errors.Is(err, devices.ErrNotFound) {
		b.log.Warn("remove a device model edgecore removed, now unused", "model", key, "err", err)
	}
}

// putModel stores a model from edgecore and re-applies it to the manager
// when devices use it.
func (b *Bridge) putModel(ctx context.Context, m *pb.DeviceModel) error {
	if _, err := ModelFromDMI(m, ""); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	m = proto.Clone(m).(*pb.DeviceModel)
	if m.Namespace == "" {
		m.Namespace = "default"
	}
	key := id(m.Namespace, m.Name)
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	if err := b.save(modelsBucket, key, m); err != nil {
		return status.Errorf(codes.Internal, "device model %s: save to the state database: %v", key, err)
	}
	b.mu.Lock()
	b.models[key] = m
	protocol := ""
	for _, h := range b.devices {
		if defaultNS(h.dev.Namespace) == m.Namespace && h.dev.GetSpec().GetDeviceModelReference() == m.Name {
			protocol = h.protocol
		}
	}
	b.mu.Unlock()
	if protocol == "" {
		return nil
	}
	model, err := ModelFromDMI(m, protocol)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := b.o.Devices.ApplyModel(ctx, Source, model); err != nil {
		return statusError(err, "apply device model %s", key)
	}
	return nil
}

// removeModel forgets a model; the manager keeps it while devices use it,
// and removes it with the last of them. Removing a model the bridge does
// not know succeeds, as removing an unknown device does.
func (b *Bridge) removeModel(ctx context.Context, namespace, name string) error {
	key := id(namespace, name)
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	b.mu.Lock()
	_, ok := b.models[key]
	delete(b.models, key)
	var users []string
	for k, h := range b.devices {
		if defaultNS(h.dev.Namespace) == defaultNS(namespace) && h.dev.GetSpec().GetDeviceModelReference() == name {
			users = append(users, k)
		}
	}
	b.mu.Unlock()
	if err := b.save(modelsBucket, key, nil); err != nil {
		return status.Errorf(codes.Internal, "device model %s: remove from the state database: %v", key, err)
	}
	if len(users) > 0 {
		if ok {
			sort.Strings(users)
			b.log.Warn("device model removed while devices use it; they keep running", "model", key, "devices", users)
		}
		return nil
	}
	if !ok {
		b.log.Debug("remove of a device model this mapper does not know; nothing to do", "model", key)
	}
	if err := b.o.Devices.RemoveModel(ctx, Source, defaultNS(namespace), name); err != nil && !errors.Is(err, devices.ErrNotFound) {
		return statusError(err, "remove device model %s", key)
	}
	return nil
}
