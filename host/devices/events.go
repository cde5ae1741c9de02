package devices

import (
	"time"

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
	name string
	ch   chan Event
	keep func(*Event) bool
}

// Subscribe returns a channel of every device event and a function that
// ends the subscription (and closes the channel). name labels the drop
// counter; buffer is the channel size (at least 1024 is wise with many
// devices). Events are dropped, never waited for, when the channel is full.
func (m *Manager) Subscribe(name string, buffer int) (<-chan Event, func()) {
	return m.SubscribeFunc(name, buffer, nil)
}

// SubscribeFunc is [Manager.Subscribe] for the events keep accepts only
// (nil keeps every event). keep runs on the device's goroutine, so it must
// be quick and must not modify the event; filtering there saves waking the
// subscriber for events it would throw away (most readings).
func (m *Manager) SubscribeFunc(name string, buffer int, keep func(*Event) bool) (<-chan Event, func()) {
	s := &subscription{name: name, ch: make(chan Event, max(buffer, 1)), keep: keep}
	m.subMu.Lock()
	m.subs[s] = struct{}{}
	m.subMu.Unlock()
	var done bool
	return s.ch, func() {
		m.subMu.Lock()
		defer m.subMu.Unlock()
		if !done {
			done = true
			delete(m.subs, s)
			close(s.ch)
		}
	}
}

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
			m.met.dropped.WithLabelValues(s.name).Inc()
		}
	}
}
