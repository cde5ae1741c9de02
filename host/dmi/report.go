package dmi

import (
	"context"
	"fmt"
	"strings"
	"time"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// startReports (re)starts the reporting of a device; pending reports
// stay queued. Call with applyMu.
func (b *Bridge) startReports(key string, d *pb.Device, protocol string) {
	b.mu.Lock()
	old := b.devices[key]
	b.mu.Unlock()
	if old != nil && old.protocol == protocol && proto.Equal(old.dev, d) {
		return
	}
	b.stopReports(key, false)
	b.mu.Lock()
	defer b.mu.Unlock()
	parent := b.runCtx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	b.heldSeq++
	h := &held{dev: d, protocol: protocol, seq: b.heldSeq, stop: cancel, done: make(chan struct{})}
	b.devices[key] = h
	b.m.devices.Set(float64(len(b.devices)))
	b.reports.Add(1)
	go func() {
		defer b.reports.Done()
		defer close(h.done)
		b.report(ctx, d)
	}()
}

// stopReports stops a device's reporting and, with drop, forgets its
// pending reports. Call with applyMu.
func (b *Bridge) stopReports(key string, drop bool) {
	b.mu.Lock()
	h := b.devices[key]
	delete(b.devices, key)
	b.m.devices.Set(float64(len(b.devices)))
	b.mu.Unlock()
	if h == nil {
		return
	}
	h.stop()
	<-h.done
	if drop {
		b.out.drop(h.dev.Namespace, h.dev.Name)
	}
}

// report queues a device's twins at each property's collectCycle and its
// state at its stateReport cycle, DefaultReportCycle when zero. This is
// mapper-framework's cadence (its TwinData.Run reports every
// collectCycle, 1 s by default; DeviceStates.Run every stateReport
// cycle, 1 s by default; reportCycle only paces its pushMethod), so a
// Device written for it reports alike. Like mapper-framework, only
// properties and states with reportToCloud are reported.
func (b *Bridge) report(ctx context.Context, d *pb.Device) {
	cycle := func(ms int64) time.Duration {
		if ms <= 0 {
			return b.o.DefaultReportCycle
		}
		return time.Duration(ms) * time.Millisecond
	}
	type sched struct {
		prop  string // "" for the state
		every time.Duration
		next  time.Time
	}
	now := time.Now()
	var ss []*sched
	for _, p := range d.GetSpec().GetProperties() {
		if p.GetReportToCloud() {
			c := cycle(p.CollectCycle)
			ss = append(ss, &sched{prop: p.Name, every: c, next: now.Add(c)})
		}
	}
	if st := d.GetStatus(); st.GetReportToCloud() {
		c := cycle(st.ReportCycle)
		ss = append(ss, &sched{every: c, next: now.Add(c)})
	}
	if len(ss) == 0 {
		return
	}
	left := map[string]string{} // property → why it is left out of reports
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		next := ss[0].next
		for _, s := range ss[1:] {
			if s.next.Before(next) {
				next = s.next
			}
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		due := map[string]bool{}
		state := false
		for _, s := range ss {
			if s.next.After(now) {
				continue
			}
			for !s.next.After(now) {
				s.next = s.next.Add(s.every)
			}
			if s.prop == "" {
				state = true
			} else {
				due[s.prop] = true
			}
		}
		st, err := b.o.Devices.Status(d.Namespace, d.Name)
		if err != nil {
			b.log.Debug("no status to report", "device", id(d.Namespace, d.Name), "err", err)
			continue
		}
		var twins []*pb.Twin
		for _, t := range st.Twins {
			if due[t.Property] && !t.ReportedAt.IsZero() {
				if tw := b.reportable(d, twinToDMI(t), left); tw != nil {
					twins = append(twins, tw)
				}
			}
		}
		if len(twins) > 0 {
			b.out.putTwins(&pb.ReportDeviceStatusRequest{
				DeviceName: d.Name, DeviceNamespace: d.Namespace,
				ReportedDevice: &pb.DeviceStatus{Twins: twins},
			})
		}
		if state && st.State != "" {
			b.out.putState(&pb.ReportDeviceStatesRequest{DeviceName: d.Name, DeviceNamespace: d.Namespace, State: st.State})
		}
	}
}

// reportable returns tw, or nil when edgecore would drop it (see
// unreportable): such a twin is left out of the report, so that the
// device's other twins still arrive, and counted. The first time, and
// again after it was reportable in between, a warning says why; left
// holds the properties already warned about.
func (b *Bridge) reportable(d *pb.Device, tw *pb.Twin, left map[string]string) *pb.Twin {
	reason, rule := unreportable(tw)
	if reason == "" {
		if _, ok := left[tw.PropertyName]; ok {
			delete(left, tw.PropertyName)
			b.log.Info("twin reported over DMI again", "device", id(d.Namespace, d.Name), "property", tw.PropertyName)
		}
		return tw
	}
	b.m.unreportable.WithLabelValues(reason).Inc()
	if left[tw.PropertyName] != reason {
		left[tw.PropertyName] = reason
		b.log.Warn("twin left out of DMI reports: edgecore would drop it",
			"device", id(d.Namespace, d.Name), "property", tw.PropertyName, "reason", reason, "rule", rule,
			"reported", clip(tw.Reported.Value), "desired", clip(tw.ObservedDesired.Value),
			"alternatives", "the value still reaches MQTT, the REST API and wapper-cloud (--cloud); this warning repeats only after the twin was reportable again")
	}
	return nil
}

// clip shortens a value for the log.
func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return strings.ToValidUTF8(s[:80], "") + fmt.Sprintf("... (%d bytes)", len(s))
}

// sendLoop drains the outbox to edgecore while registered, paced by the
// limiter. It picks a report only once the limiter lets it send, so that
// what arrived meanwhile competes for the call.
func (b *Bridge) sendLoop(ctx context.Context, c pb.DeviceManagerServiceClient) {
	backoff := time.Duration(0)
	for {
		if err := b.ready.wait(ctx); err != nil {
			return
		}
		if b.out.len() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-b.out.notify:
			}
			continue
		}
		if err := b.limiter.Wait(ctx); err != nil {
			return
		}
		r := b.out.pop()
		if r == nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		if r.twins != nil {
			_, err = c.ReportDeviceStatus(cctx, r.twins)
		} else {
			_, err = c.ReportDeviceStates(cctx, r.state)
		}
		cancel()
		kind := kindName(r.kind())
		if err == nil {
			b.out.sent(r)
			b.m.reportsSent.WithLabelValues(kind, classNames[r.class]).Inc()
			backoff = 0
			continue
		}
		st := status.Convert(err)
		switch {
		case ctx.Err() != nil:
			b.out.requeue(r)
			return
		case st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled:
			// Edgecore went away: keep the report and register again
			// once it is back.
			b.m.reportsFailed.WithLabelValues(kind, "unavailable").Inc()
			b.out.requeue(r)
			b.ready.set(false)
			b.m.connected.Set(0)
			select {
			case b.reregister <- struct{}{}:
			default:
			}
			b.log.Info("edgecore unreachable; reports wait in the outbox", "err", st.Message())
		case strings.Contains(st.Message(), "too many request"):
			// Edgecore's rate limiter: keep the report and slow down.
			b.m.reportsFailed.WithLabelValues(kind, "ratelimited").Inc()
			b.out.requeue(r)
			backoff = min(max(2*backoff, 500*time.Millisecond), 10*time.Second)
			b.log.Debug("edgecore rate limit; backing off", "backoff", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		default:
			b.m.reportsFailed.WithLabelValues(kind, "rejected").Inc()
			b.log.Error("edgecore rejected a report; dropped", "kind", kind, "key", r.key, "code", st.Code(), "err", st.Message())
		}
	}
}
