package runtime

import (
	"errors"

	"wapper.dev/wapper/abi"
)

// Instance sync: bringing the devices an instance holds up to date with
// the registry. An instance holds the devices whose home its slot is
// (plus, for a while, devices that just left it); it learns of a device,
// or of its new description, when a call for it arrives (ensure), and
// forgets the devices that left at its next use (sweep). Everything here
// runs on the holder of the instance's slot.

// known records which description of a device an instance was given.
type known struct {
	d       *device
	version uint64
}

// ensure gives the instance the device's current description and makes
// the instance's slot the device's home. The caller holds d.mu.
func (in *instance) ensure(d *device) error {
	if err := in.give(d, d.cur.Load()); err != nil {
		return err
	}
	if old := d.last; old != in.slot {
		d.last = in.slot
		d.home.Store(in.slot)
		in.p.pool.rehome(old, in.slot, d.cur.Load().desc.ID)
	}
	return nil
}

// give makes sure the instance has description cur of d: it adds the
// device, updates it, or replaces a removed device with the same handle.
func (in *instance) give(d *device, cur *descVersion) error {
	id := cur.desc.ID
	k, ok := in.known[id]
	if ok && k.d == d && k.version == cur.version {
		return nil
	}
	if ok && k.d != d {
		// A removed device with the same handle: remove it first.
		if err := in.removeDevice(id); err != nil {
			return err
		}
		ok = false
	}
	export, f := abi.ExportDeviceAdd, in.add
	if ok {
		export, f = abi.ExportDeviceUpdate, in.update
	}
	in.stack[0] = uint64(id)
	if _, err := in.callBuf(export, f, cur.raw, 1); err != nil {
		return err
	}
	in.known[id] = known{d: d, version: cur.version}
	return nil
}

func (in *instance) removeDevice(id uint32) error {
	delete(in.known, id)
	in.stack[0] = uint64(id)
	_, err := in.call(abi.ExportDeviceRemove, in.remove)
	return err
}

// sweep removes from the instance the devices that left its slot (moved
// to another, or removed from the plugin) and have not come back. It
// returns the error of removing only; the others' are logged.
func (in *instance) sweep(only *device) error {
	in.pend = in.p.pool.takePending(in.slot, in.pend[:0])
	var onlyErr error
	for _, id := range in.pend {
		k, ok := in.known[id]
		if !ok || in.dead {
			continue
		}
		if in.p.device(id) == k.d && k.d.home.Load() == in.slot {
			continue // it came back
		}
		err := in.removeDevice(id)
		if k.d == only {
			onlyErr = err
		} else if err != nil {
			in.p.log.Warn("removing device from instance failed", "device", k.d.name(), "instance", in.id, "err", err)
		}
	}
	return onlyErr
}

// readd gives a restarted instance the devices its dead predecessor held
// that still have its slot as home. It takes no device lock: a caller
// holding one may be waiting for this slot, and takes the device
// elsewhere (or gives it to this instance itself once it is back).
func (in *instance) readd(dead *instance) error {
	for id, k := range dead.known {
		if in.dead {
			break
		}
		if in.p.device(id) != k.d || k.d.home.Load() != in.slot {
			continue // removed or moved meanwhile
		}
		in.curDev = k.d
		if err := in.give(k.d, k.d.cur.Load()); err != nil && !in.dead {
			in.p.log.Warn("re-adding device to restarted instance failed; it is retried on its next call", "device", k.d.name(), "err", err)
		}
		in.curDev = nil
	}
	if in.dead {
		return errors.New("instance failed while devices were re-added")
	}
	return nil
}
