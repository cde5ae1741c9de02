package runtime

import (
	"sync"
	"sync/atomic"
	"time"

	"wapper.dev/wapper/abi"
)

// device is a device known to the plugin.
type device struct {
	// mu serialises calls for the device and guards the fields up to cur.
	mu      sync.Mutex
	desc    abi.Device
	removed bool
	// last is the device's home: the slot whose instance holds its
	// description and serves its calls. A call goes elsewhere only when
	// the home stays busy or restarts; the device then moves.
	last *slot
	// strikes counts the device's calls in a row that killed their
	// instance; from the second, its calls fail at once until until, so
	// that one device that traps or hangs cannot keep the instances its
	// neighbours share restarting.
	strikes int
	until   time.Time

	// cur is the description instances are given, with its version. It
	// changes only under mu but is read without it (by a restarted
	// instance re-adding the devices of the one it replaces, and by the
	// report host function).
	cur atomic.Pointer[descVersion]
	// home mirrors last for readers that do not hold mu.
	home atomic.Pointer[slot]
	// ioCause is the host's text of the device's last failed I/O call,
	// cleared by a successful one; a state reason other than online
	// carries it (see Plugin.State). Host functions set it during calls
	// for the device, which may run without mu (re-adds).
	ioCause atomic.Pointer[string]
}

// descVersion is one description of a device, as given to instances.
type descVersion struct {
	desc    *abi.Device
	raw     []byte // JSON of desc
	version uint64
}

func newDevice(desc abi.Device, raw []byte, version uint64) *device {
	d := &device{desc: desc}
	d.cur.Store(&descVersion{desc: &desc, raw: raw, version: version})
	return d
}

// setDesc replaces the description; the caller holds mu.
func (d *device) setDesc(desc abi.Device, raw []byte, version uint64) {
	d.desc = desc
	d.cur.Store(&descVersion{desc: &desc, raw: raw, version: version})
}

// name is the device's namespace/name, for logs and errors.
func (d *device) name() string {
	desc := d.cur.Load().desc
	return desc.Namespace + "/" + desc.Name
}

// cause returns the host's text of the device's last failed I/O call.
func (d *device) cause() string {
	if c := d.ioCause.Load(); c != nil {
		return *c
	}
	return ""
}

// setCause sets or (with "") clears the cause of failed I/O.
func (d *device) setCause(c string) {
	if c == "" {
		if d.ioCause.Load() != nil {
			d.ioCause.Store(nil)
		}
		return
	}
	d.ioCause.Store(&c)
}

// registry is the set of devices a plugin has, by handle.
type registry struct {
	mu      sync.RWMutex // guards devices; a leaf lock
	devices map[uint32]*device
	version atomic.Uint64 // of descriptions, for every device
}

func newRegistry() *registry { return &registry{devices: map[uint32]*device{}} }

// get returns the device with handle id, or nil.
func (r *registry) get(id uint32) *device {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.devices[id]
}

// add registers d under its handle; false when the handle is taken.
func (r *registry) add(id uint32, d *device) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.devices[id]; dup {
		return false
	}
	r.devices[id] = d
	return true
}

// remove forgets d, unless its handle is another device's by now.
func (r *registry) remove(id uint32, d *device) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.devices[id] == d {
		delete(r.devices, id)
	}
}

// nextVersion returns a description version no description had before.
func (r *registry) nextVersion() uint64 { return r.version.Add(1) }
