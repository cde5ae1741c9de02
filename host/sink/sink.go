// Package sink stores the readings of properties whose pushMethod names a
// database (dbMethod: redis, mysql, influxdb2) or an OpenTelemetry
// endpoint (otel), in the shapes KubeEdge's mapper-framework stores them,
// so that dashboards built on a mapper-framework mapper keep working.
//
// Readings go first to a bounded queue per target in the host's state
// database, then to the target in batches, one writer per target: a
// target that is down or slow keeps its readings on disk until it returns
// and never slows reading or the other targets. Past the queue's bound
// the oldest readings are dropped and counted. A sink that cannot be used
// (TDEngine, a required field missing) is refused aloud: in the device's
// status and in the log.
package sink

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/hostio"
)

// Options configure the sinks.
type Options struct {
	// DB is the host's state database, which keeps the queues; Path is
	// its file, for errors.
	DB   *bolt.DB
	Path string

	Logger     *slog.Logger
	Registerer prometheus.Registerer

	// Buffer bounds the readings queued per target (default 100000);
	// past it the oldest are dropped. Batch is the most readings written
	// to a target at once (default 2000: with many devices, MySQL gets
	// a few rows per table in each INSERT, and bigger batches pay).
	Buffer int
	Batch  int

	// Secrets hold the targets' credentials: key "password" (redis,
	// mysql) or "token" (influxdb2) of secret "dbmethod-KIND", such as
	// dbmethod-redis/password. Where it has none, the environment
	// variable mapper-framework reads is used: PASSWORD, or TOKEN for
	// influxdb2. Getenv reads the environment (default os.Getenv).
	Secrets hostio.Secrets
	Getenv  func(string) string
}

// Sinks sends readings to the data sinks of their properties.
type Sinks struct {
	mgr  *devices.Manager
	opts Options
	log  *slog.Logger
	q    *queue
	met  *metrics

	events <-chan devices.Event // from Subscribe
	cancel func()               // ends the subscription

	mu      sync.Mutex
	targets map[string]*target               // by key
	props   map[string]map[propKey]*propSink // by device "namespace/name"
	wg      sync.WaitGroup
	ctx     context.Context // of Run, for the writers
}

// target is one target and its writer's state.
type target struct {
	t      Target
	key    string
	notify chan struct{} // wakes the writer when readings are queued

	// Under Sinks.mu:
	err     string // why the last write failed, "" after a success
	errTime time.Time
}

type propKey struct{ property, method string }

// propSink is where one sink of one property stands.
type propSink struct {
	key              string // of its target, "" when refused
	target           string // its target's name
	written, dropped uint64
	err              string // the refusal of the sink, or the last rejection of a reading
	errTime          time.Time
	refused          bool // err is the sink's refusal
}

// New returns the sinks of mgr's devices; call Subscribe, then Run.
func New(mgr *devices.Manager, o Options) *Sinks {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Buffer <= 0 {
		o.Buffer = 100000
	}
	if o.Batch <= 0 {
		o.Batch = 2000
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	s := &Sinks{mgr: mgr, opts: o, log: o.Logger.With("component", "sinks"), q: &queue{db: o.DB, path: o.Path, limit: o.Buffer, n: map[string]int{}},
		met: newMetrics(o.Registerer), targets: map[string]*target{}, props: map[string]map[propKey]*propSink{}}
	mgr.SetSinkReporter(s)
	return s
}

// Subscribe subscribes to the readings Run stores: Run's synchronous
// first step, to call before devices start so that Run misses no reading;
// Run calls it if it was not.
func (s *Sinks) Subscribe() {
	if s.events != nil {
		return
	}
	s.events, s.cancel = s.mgr.SubscribeFunc("sinks", 1<<14, func(ev *devices.Event) bool {
		if ev.Type == devices.EventDeviceRemoved {
			return true
		}
		if ev.Type != devices.EventReading {
			return false
		}
		for i := range ev.Twins {
			if p := ev.Twins[i].Push; p != nil && (p.DBMethod != nil || p.OTEL != nil) {
				return true
			}
		}
		return false
	})
}

// Run stores readings until ctx ends: it first resumes the writes queued
// before the host stopped, then queues each reading and wakes its
// target's writer. When ctx ends it ends the subscription, queues the
// readings already received and waits for the writers (each write is
// bounded), and returns nil; what is still queued is written after the
// next start. It returns an error only when the queue cannot be read.
func (s *Sinks) Run(ctx context.Context) error {
	s.Subscribe()
	keys, err := s.q.load()
	if err != nil {
		s.cancel()
		return err
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	s.ctx = wctx
	for _, k := range keys {
		var t Target
		if json.Unmarshal([]byte(k), &t) != nil {
			s.log.Error("sink queue holds a target it cannot read; its readings stay queued", "target", k)
			continue
		}
		if n := s.q.length(k); n > 0 {
			s.log.Info("resuming the writes of readings queued before the host stopped", "target", t.String(), "queued", n)
		}
		s.startLocked(t, k)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range s.events {
			batch := []devices.Event{ev}
			for len(batch) < 1024 {
				select {
				case ev, ok := <-s.events:
					if !ok {
						s.handle(batch)
						return
					}
					batch = append(batch, ev)
					continue
				default:
				}
				break
			}
			s.handle(batch)
		}
	}()
	<-ctx.Done()
	s.cancel()
	<-done
	stop()
	s.wg.Wait()
	return nil
}

// handle queues the readings of a batch of events, in one transaction.
func (s *Sinks) handle(batch []devices.Event) {
	recs := map[string][]Record{}
	type origin struct {
		ps  *propSink
		rec Record
	}
	s.mu.Lock()
	for _, ev := range batch {
		if ev.Type == devices.EventDeviceRemoved {
			delete(s.props, ev.Device)
			continue
		}
		for _, tw := range ev.Twins {
			if tw.Push == nil || (tw.Push.DBMethod == nil && tw.Push.OTEL == nil) {
				continue
			}
			for _, r := range routes(tw.Push) {
				ps := s.propLocked(ev.Device, propKey{tw.Property, r.Method})
				if r.Err != nil {
					if !ps.refused || ps.err != r.Err.Error() {
						s.log.Error("data sink refused; the property's readings are not stored there", "device", ev.Device, "property", tw.Property, "method", "pushMethod."+r.Method, "err", r.Err)
						ps.err, ps.errTime, ps.refused, ps.key, ps.target = r.Err.Error(), time.Now(), true, "", r.Target.String()
					}
					ps.dropped++
					s.met.dropped.WithLabelValues(r.Target.Kind, "refused").Inc()
					continue
				}
				if ps.refused {
					ps.err, ps.refused = "", false
				}
				key := r.Target.key()
				ps.key, ps.target = key, r.Target.String()
				if s.targets[key] == nil {
					s.startLocked(r.Target, key)
				}
				if tw.ReportedTime.IsZero() {
					continue // not read yet
				}
				recs[key] = append(recs[key], r.record(ev.Namespace, ev.Name, tw.Property, tw.Reported, tw.Type, tw.ReportedTime.UnixMilli(), tw.Push))
			}
		}
	}
	s.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	res, err := s.q.append(recs)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.log.Error("readings for data sinks lost: the queue cannot be written", "err", err)
		for key, rs := range recs {
			s.droppedLocked(s.targets[key].t.Kind, "queue", rs)
		}
		return
	}
	for key, a := range res {
		tg := s.targets[key]
		if len(a.dropped) > 0 {
			s.droppedLocked(tg.t.Kind, "buffer_full", a.dropped)
			s.log.Warn("data sink queue full: oldest readings dropped", "target", tg.t.String(), "dropped", len(a.dropped), "bound", s.opts.Buffer)
		}
		s.met.queued.WithLabelValues(tg.t.Kind, tg.t.String()).Set(float64(a.queued))
		select {
		case tg.notify <- struct{}{}:
		default:
		}
	}
}

// propLocked returns the status of a property's sink, creating it.
func (s *Sinks) propLocked(device string, k propKey) *propSink {
	m := s.props[device]
	if m == nil {
		m = map[propKey]*propSink{}
		s.props[device] = m
	}
	ps := m[k]
	if ps == nil {
		ps = &propSink{}
		m[k] = ps
	}
	return ps
}

// droppedLocked counts readings lost for reason.
func (s *Sinks) droppedLocked(kind, reason string, recs []Record) {
	s.met.dropped.WithLabelValues(kind, reason).Add(float64(len(recs)))
	for i := range recs {
		if ps := s.findLocked(&recs[i], kind); ps != nil {
			ps.dropped++
		}
	}
}

// findLocked returns the status of the sink of kind that rec was queued
// for, or nil when its device is gone.
func (s *Sinks) findLocked(rec *Record, kind string) *propSink {
	m := s.props[rec.deviceKey()]
	if m == nil {
		return nil
	}
	method := KindOTEL
	if kind != KindOTEL {
		method = "dbMethod." + kind
	}
	return m[propKey{rec.Property, method}]
}

// startLocked starts the writer of a target.
func (s *Sinks) startLocked(t Target, key string) {
	tg := &target{t: t, key: key, notify: make(chan struct{}, 1)}
	s.targets[key] = tg
	if s.ctx == nil {
		return // Run starts it
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.write(s.ctx, tg)
	}()
}

// Backoff between failed writes to a target.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
	// writeTimeout bounds one batch's write.
	writeTimeout = 30 * time.Second
)

// write is the writer of a target: it writes the oldest queued readings
// in batches until ctx ends, waiting after a failure (0.5 s doubling to
// 30 s) and for new readings when the queue is empty. After a failure it
// connects again, reading the credentials again, so that a rotated
// password takes effect.
func (s *Sinks) write(ctx context.Context, tg *target) {
	var drv driver
	defer func() {
		if drv != nil {
			if err := drv.close(); err != nil {
				s.log.Debug("close data sink", "target", tg.t.String(), "err", err)
			}
		}
	}()
	backoff := time.Duration(0)
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		recs, last, err := s.q.peek(tg.key, s.opts.Batch)
		if err == nil && len(recs) == 0 {
			select {
			case <-tg.notify:
			case <-ctx.Done():
			}
			continue
		}
		if err == nil && drv == nil {
			drv, err = open(tg.t, s.credentials)
		}
		var rej *rejected
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err = drv.write(wctx, recs)
			cancel()
			if errors.As(err, &rej) {
				err = nil
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if drv != nil { // connect again, with the credentials as they are then
				drv.close()
				drv = nil
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			s.failed(tg, err, backoff)
			if !wait(backoff) {
				return
			}
			continue
		}
		backoff = 0
		if _, err := s.q.remove(tg.key, last); err != nil {
			s.log.Error("data sink: written readings cannot be removed from the queue; they will be written again", "target", tg.t.String(), "err", err)
			if !wait(maxBackoff) {
				return
			}
			continue
		}
		s.settled(tg, recs, rej)
	}
}

// credentials reads a target's credential; see [Options.Secrets].
func (s *Sinks) credentials(kind, key, env string) string {
	if s.opts.Secrets != nil {
		if v, err := s.opts.Secrets.Key("dbmethod-"+kind, key); err == nil {
			return string(v)
		}
	}
	return s.opts.Getenv(env)
}

// failed records a failed write.
func (s *Sinks) failed(tg *target, err error, retry time.Duration) {
	s.met.errors.WithLabelValues(tg.t.Kind).Inc()
	s.met.up.WithLabelValues(tg.t.Kind, tg.t.String()).Set(0)
	s.mu.Lock()
	defer s.mu.Unlock()
	first := tg.err == ""
	tg.err, tg.errTime = err.Error(), time.Now()
	if first {
		s.log.Warn("data sink not taking readings; they stay queued on disk and are written when it does", "target", tg.t.String(), "queued", s.q.length(tg.key), "err", err)
	} else {
		s.log.Debug("data sink write failed", "target", tg.t.String(), "retry", retry, "err", err)
	}
}

// settled records a batch written, with the readings the server refused
// (rej, or nil).
func (s *Sinks) settled(tg *target, recs []Record, rej *rejected) {
	refused := make([]bool, len(recs))
	if rej != nil {
		if rej.idx == nil {
			for i := range refused {
				refused[i] = true
			}
		}
		for _, i := range rej.idx {
			refused[i] = true
		}
	}
	n := len(recs)
	if rej != nil {
		n -= rej.count(len(recs))
	}
	s.met.written.WithLabelValues(tg.t.Kind).Add(float64(n))
	s.met.up.WithLabelValues(tg.t.Kind, tg.t.String()).Set(1)
	s.met.queued.WithLabelValues(tg.t.Kind, tg.t.String()).Set(float64(s.q.length(tg.key)))
	s.mu.Lock()
	defer s.mu.Unlock()
	if tg.err != "" {
		s.log.Info("data sink taking readings again", "target", tg.t.String(), "queued", s.q.length(tg.key))
		tg.err = ""
	}
	if rej != nil {
		s.met.dropped.WithLabelValues(tg.t.Kind, "rejected").Add(float64(rej.count(len(recs))))
		s.log.Warn("data sink refused readings; they are dropped", "target", tg.t.String(), "count", rej.count(len(recs)), "err", rej.err)
	}
	now := time.Now()
	for i := range recs {
		ps := s.findLocked(&recs[i], tg.t.Kind)
		if ps == nil {
			continue
		}
		if refused[i] {
			ps.dropped++
			ps.err, ps.errTime = rej.err.Error(), now
		} else {
			ps.written++
			if !ps.refused {
				ps.err = ""
			}
		}
	}
}

// SinkStatus implements [devices.SinkReporter].
func (s *Sinks) SinkStatus(device string) []devices.SinkStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.props[device]
	if len(m) == 0 {
		return nil
	}
	out := make([]devices.SinkStatus, 0, len(m))
	for k, ps := range m {
		st := devices.SinkStatus{Property: k.property, Method: k.method, Target: ps.target, Written: ps.written, Dropped: ps.dropped,
			Error: ps.err, ErrorTime: ps.errTime}
		if ps.key != "" {
			st.Queued = s.q.length(ps.key)
			if tg := s.targets[ps.key]; tg != nil && tg.err != "" && !ps.refused {
				st.Error, st.ErrorTime = tg.err, tg.errTime
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b devices.SinkStatus) int {
		return cmp.Or(cmp.Compare(a.Property, b.Property), cmp.Compare(a.Method, b.Method))
	})
	return out
}

// metrics are the sinks' Prometheus metrics.
type metrics struct {
	written *prometheus.CounterVec
	dropped *prometheus.CounterVec
	errors  *prometheus.CounterVec
	queued  *prometheus.GaugeVec
	up      *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		written: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_sink_written_total",
			Help: "Readings stored in data sinks (pushMethod.dbMethod and pushMethod.otel), by kind."}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_sink_dropped_total",
			Help: "Readings lost for data sinks, by kind and reason (buffer_full: the oldest past the queue's bound; rejected: refused by the server; refused: the sink is not usable; queue: the queue could not be written)."}, []string{"kind", "reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_sink_write_errors_total",
			Help: "Failed batch writes to data sinks, by kind; the readings stay queued."}, []string{"kind"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wapper_sink_queue_depth",
			Help: "Readings queued on disk for a data sink."}, []string{"kind", "target"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wapper_sink_up",
			Help: "1 when the last write to a data sink succeeded, 0 when it failed."}, []string{"kind", "target"}),
	}
	if reg != nil {
		reg.MustRegister(m.written, m.dropped, m.errors, m.queued, m.up)
	}
	return m
}
