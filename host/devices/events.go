package devices

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/abi"
)

// EventType tells what an Event reports.
type EventType int

// Event types.
const (
	// EventReading: a property was read (collect cycle, read-back after a
	// write, or pushed by the plugin). Twins holds that property, with its
	// pushMethod.
	EventReading EventType = iota + 1
	// EventReport: the report cycle; Twins holds every property.
	EventReport
	// EventDesired: a desired value was set; Twins holds that property.
	EventDesired
	// EventState: the device state, at each state cycle and on change
	// (Changed is set then).
	EventState
	// EventDeviceAdded and EventDeviceRemoved: the device set changed.
	EventDeviceAdded
	EventDeviceRemoved
)

func (t EventType) String() string {
	switch t {
	case EventReading:
		return "reading"
	case EventReport:
		return "report"
	case EventDesired:
		return "desired"
	case EventState:
		return "state"
	case EventDeviceAdded:
		return "added"
	case EventDeviceRemoved:
		return "removed"
	}
	return "unknown"
}

// PushesMQTT reports whether a reading event carries a twin with a
// pushMethod.mqtt; PushesHTTP the same for pushMethod.http.
func (ev *Event) PushesMQTT() bool {
	for i := range ev.Twins {
		if p := ev.Twins[i].Push; p != nil && p.MQTT != nil {
			return true
		}
	}
	return false
}

// PushesHTTP: see [Event.PushesMQTT].
func (ev *Event) PushesHTTP() bool {
	for i := range ev.Twins {
		if p := ev.Twins[i].Push; p != nil && p.HTTP != nil {
			return true
		}
	}
	return false
}

// Event is something that happened to a device.
type Event struct {
	Type EventType
	// Device is "namespace/name".
	Device    string
	Namespace string
	Name      string
	Time      time.Time
	Twins     []TwinStatus
	State     abi.State
	Reason    string
	Changed   bool
}

type subscription struct {
	ch   chan Event
	keep func(*Event) bool
	drop prometheus.Counter // wapper_device_events_dropped_total of this subscriber
}

// emit hands ev to every subscriber that keeps it. ev.Twins then belongs
// to the subscribers: the caller must not change it afterwards.
func (m *Manager) emit(ev Event) {
	m.subMu.RLock()
	defer m.subMu.RUnlock()
	for s := range m.subs {
		if s.keep != nil && !s.keep(&ev) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			s.drop.Inc()
		}
	}
}

// eventFiller completes an event once a subscriber keeps it.
type eventFiller interface{ fill(ev *Event) }

// emitLazy is [Manager.emit] for an event whose Twins hold headers only
// (property, type, access mode and push method), in space the caller
// reuses: keep sees the headers, and f fills in the twins, once, only
// when a subscriber keeps the event, so that an event nobody wants costs
// no allocation.
func (m *Manager) emitLazy(ev *Event, f eventFiller) {
	m.subMu.RLock()
	defer m.subMu.RUnlock()
	var out *Event
	for s := range m.subs {
		if s.keep != nil && !s.keep(ev) {
			continue
		}
		if out == nil {
			e := *ev
			out = &e
			f.fill(out)
		}
		select {
		case s.ch <- *out:
		default:
			s.drop.Inc()
		}
	}
}

// hasSubscribers tells whether any subscription exists, so that an event
// nobody can receive is not even built.
func (m *Manager) hasSubscribers() bool {
	m.subMu.RLock()
	defer m.subMu.RUnlock()
	return len(m.subs) > 0
}
