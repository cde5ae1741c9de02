package dmi

import (
	"context"
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
	h := &held{dev: d, protocol: protocol, stop: cancel, done: make(chan struct{})}
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

// report queues a device's twins at each property's reportCycle and its
// state at its stateReport cycle. Like mapper-framework, only properties
// and states with reportToCloud are reported.
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
			c := cycle(p.ReportCycle)
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
				twins = append(twins, twinToDMI(t))
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

// sendLoop drains the outbox to edgecore while registered, paced by the
// limiter.
func (b *Bridge) sendLoop(ctx context.Context, c pb.DeviceManagerServiceClient) {
	backoff := time.Duration(0)
	for {
		if err := b.ready.wait(ctx); err != nil {
			return
		}
		r := b.out.pop()
		if r == nil {
			select {
			case <-ctx.Done():
				return
			case <-b.out.notify:
			}
			continue
		}
		if err := b.limiter.Wait(ctx); err != nil {
			b.out.requeue(r)
			return
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
			b.m.reportsSent.WithLabelValues(kind).Inc()
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
