package push

import (
	"context"
	"log/slog"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/host/devices"
)

// Unsupported warns about the part of a property's pushMethod that
// wapper-host does not act on yet (anomalyDetection; package host/sink
// stores dbMethod and otel, and refuses aloud the ones it cannot): once
// per device and property, at the first reading that carries the
// pushMethod, and again when that part changes or the device is removed and
// added back.
type Unsupported struct {
	mgr    *devices.Manager
	log    *slog.Logger
	events <-chan devices.Event // from Subscribe
	cancel func()               // ends the subscription

	// warned is what was last warned about, by device and property; only
	// the event goroutine (or a test calling handle) uses it.
	warned map[string]map[string]warnedPush
}

type warnedPush struct {
	push *v1beta1.PushMethod // as carried by the readings: the same pointer until the Device changes
	what string
}

// NewUnsupported returns a warner; call Subscribe, then Run.
func NewUnsupported(mgr *devices.Manager, log *slog.Logger) *Unsupported {
	if log == nil {
		log = slog.Default()
	}
	return &Unsupported{mgr: mgr, log: log, warned: map[string]map[string]warnedPush{}}
}

// Subscribe subscribes to the readings that carry such a pushMethod:
// Run's synchronous first step, to call before devices start; Run calls
// it if it was not.
func (u *Unsupported) Subscribe() {
	if u.events != nil {
		return
	}
	u.events, u.cancel = u.mgr.SubscribeFunc("push-unsupported", 256, func(ev *devices.Event) bool {
		if ev.Type == devices.EventDeviceRemoved {
			return true
		}
		if ev.Type != devices.EventReading {
			return false
		}
		for i := range ev.Twins {
			if hasUnsupported(ev.Twins[i].Push) {
				return true
			}
		}
		return false
	})
}

// Run warns until ctx ends, then ends the subscription after the events
// already received, and returns nil.
func (u *Unsupported) Run(ctx context.Context) error {
	u.Subscribe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range u.events {
			u.handle(ev)
		}
	}()
	<-ctx.Done()
	u.cancel()
	<-done
	return nil
}

func hasUnsupported(p *v1beta1.PushMethod) bool {
	return p != nil && p.AnomalyDetection != nil
}

func (u *Unsupported) handle(ev devices.Event) {
	if ev.Type == devices.EventDeviceRemoved {
		delete(u.warned, ev.Device)
		return
	}
	for _, t := range ev.Twins {
		if !hasUnsupported(t.Push) {
			continue
		}
		byProp := u.warned[ev.Device]
		if w, ok := byProp[t.Property]; ok && w.push == t.Push {
			continue
		}
		what := unsupportedMethods(t.Push)
		if byProp == nil {
			byProp = map[string]warnedPush{}
			u.warned[ev.Device] = byProp
		}
		w, ok := byProp[t.Property]
		byProp[t.Property] = warnedPush{push: t.Push, what: what}
		if ok && w.what == what {
			continue // the Device changed elsewhere
		}
		u.log.Warn(what+" is not supported yet; ignored", "device", ev.Device, "property", t.Property)
	}
}

// unsupportedMethods names the parts of p wapper-host ignores
// ("pushMethod.anomalyDetection"), or is "" when there are none.
func unsupportedMethods(p *v1beta1.PushMethod) string {
	if p == nil || p.AnomalyDetection == nil {
		return ""
	}
	return "pushMethod.anomalyDetection"
}
